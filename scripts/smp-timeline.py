#!/usr/bin/env python3
"""Boot the kernel in both bring-up modes and draw each CPU's bring-up timeline.

    scripts/smp-timeline.py [--smp N] [--kvm]

Runs `cargo run -- --smp N -- then=exit log=debug smp=MODE` for serial and
parallel mode, reads the kernel's timeline table (printed at log=debug, times
in microseconds since the bring-up began), and prints one text chart per mode:

    cpu 1  |---------KA====================O            |
            - = INIT wait  K = kicked (SIPI sent)  A = alive and called in
            = = waiting for the others and the TSC check  O = online

Uses only the Python standard library.
"""
import argparse
import re
import subprocess
import sys

ROW = re.compile(r"smp:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\w+)\s*$")
SUMMARY = re.compile(r"smp: (\d+) of (\d+) CPUs online in (\d+) us \((\w+)\)")
WIDTH = 64


def boot(cpus, mode, kvm):
    command = ["cargo", "run", "-q", "--", "--smp", str(cpus), "--timeout", "300"]
    if kvm:
        command.append("--kvm")
    command += ["--", "then=exit", "log=debug", f"smp={mode}"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"boot failed ({result.returncode}):\n{result.stderr}\n{result.stdout}")
    rows = [tuple(int(x) for x in m.groups()[:6]) for m in map(ROW.search, result.stdout.splitlines()) if m]
    summary = SUMMARY.search(result.stdout)
    accelerator = "KVM" if kvm else "TCG"
    return rows, summary.group(0) if summary else "(no summary line)", accelerator


def chart(rows, total_us):
    scale = WIDTH / max(total_us, 1)
    lines = []
    previous_online = 0
    for cpu, apic, kicked, alive, called_in, online in rows:
        bar = [" "] * (WIDTH + 1)
        position = lambda us: min(WIDTH, int(us * scale))
        # The INIT wait starts when the previous AP is online (serial) or at 0 (parallel).
        init_sent = previous_online if previous_online < kicked else 0
        for i in range(position(init_sent), position(kicked)):
            bar[i] = "-"
        for i in range(position(called_in), position(online)):
            bar[i] = "="
        bar[position(kicked)] = "K"
        bar[position(called_in)] = "A"
        bar[position(online)] = "O"
        previous_online = online
        lines.append(f"cpu {cpu:<3}|{''.join(bar)}|  kicked {kicked:>6}  alive {alive:>6}  "
                     f"called-in {called_in:>6}  online {online:>6} us")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smp", type=int, default=8)
    parser.add_argument("--kvm", action="store_true")
    args = parser.parse_args()
    runs = {mode: boot(args.smp, mode, args.kvm) for mode in ("serial", "parallel")}
    total = max(row[5] for rows, _, _ in runs.values() for row in rows)
    for mode, (rows, summary, accelerator) in runs.items():
        print(f"{mode} ({accelerator}, same time scale: {WIDTH} columns = {total} us)")
        print(summary)
        print(chart(rows, total))
        print()
    print("- = INIT wait   K = SIPI sent   A = alive and called in   = = waiting for the others and the TSC check   O = online")


if __name__ == "__main__":
    main()
