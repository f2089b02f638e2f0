/*
 * hello: the smallest user program. It shows that the kernel started a
 * process in user mode with the arguments it was given, that console writes
 * work, and that the exit status reaches whoever ran it.
 *
 * Output:
 *   hello from user mode: argc=N
 *   argv[0]=PROGRAM
 *   argv[1]=...            (one line per argument)
 * Exit status: atoi(argv[1]) when there is an argument, else 0, so a test
 * can check that a chosen status comes back (e.g. "hello 42" exits with 42).
 */
#include "utest.h"

int main(int argc, char **argv)
{
	stdout_lines();
	printf("hello from user mode: argc=%d\n", argc);
	for (int i = 0; i < argc; i++)
		printf("argv[%d]=%s\n", i, argv[i]);
	return argc > 1 ? atoi(argv[1]) : 0;
}
