//! Debian's Linux 6.12 for `bench-user`: which package, fetched once with
//! `apt-get download` into the target directory and unpacked with
//! `dpkg-deb -x`, and the command line it boots with.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use crate::SetupError;

/// Debian's kernel packages: `linux-image-6.12.117+deb12-amd64-unsigned`.
const PACKAGE_PREFIX: &str = "linux-image-6.12.";
/// The plain amd64 flavour (not `-cloud-amd64`, `-rt-amd64`, nor `-dbg`).
/// `-unsigned` is the image itself; the signed one only adds a signature.
const PACKAGE_SUFFIX: &str = "-amd64-unsigned";
/// What `apt-cache search` is asked for (a regular expression on names).
const SEARCH: &str = "^linux-image-6\\.12\\.";

/// An unpacked kernel, ready to boot.
#[derive(Clone, Debug)]
pub struct LinuxImage {
    pub package: String,
    /// `boot/vmlinuz-*` inside the unpacked package.
    pub vmlinuz: PathBuf,
}

/// The version inside a plain amd64 package name (`6.12.117+deb12`), or
/// None for any other package.
fn version_of(package: &str) -> Option<&str> {
    let rest = package.strip_prefix("linux-image-")?.strip_suffix(PACKAGE_SUFFIX)?;
    // Another flavour would leave a dash: `6.12.117+deb12-cloud`.
    let plain = rest.starts_with(&PACKAGE_PREFIX["linux-image-".len()..]) && !rest.contains('-');
    plain.then_some(rest)
}

/// The upstream version for titles: `6.12.117` (the whole name for a
/// package that is not named as Debian names its kernels).
pub fn short_version(package: &str) -> &str {
    match version_of(package) {
        Some(version) => version.split('+').next().unwrap_or(version),
        None => package,
    }
}

/// Natural order: runs of digits compare as numbers (`6.12.99` < `6.12.117`).
fn compare_versions(a: &str, b: &str) -> Ordering {
    fn chunks(text: &str) -> Vec<(bool, &str)> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for (i, c) in text.char_indices().skip(1) {
            let previous = text[..i].chars().next_back().unwrap();
            if c.is_ascii_digit() != previous.is_ascii_digit() {
                chunks.push(&text[start..i]);
                start = i;
            }
        }
        chunks.push(&text[start..]);
        chunks.into_iter().map(|c| (c.starts_with(|c: char| c.is_ascii_digit()), c)).collect()
    }
    let (a, b) = (chunks(a), chunks(b));
    for (x, y) in a.iter().zip(&b) {
        let order = match (x, y) {
            ((true, x), (true, y)) => {
                let number = |s: &str| s.trim_start_matches('0').to_string();
                let (x, y) = (number(x), number(y));
                x.len().cmp(&y.len()).then(x.cmp(&y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

/// The newest plain amd64 `-unsigned` Linux 6.12 package in the output of
/// `apt-cache search` (`NAME - DESCRIPTION` lines).
pub fn newest_package(apt_cache_search: &str) -> Option<String> {
    apt_cache_search
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| Some((name, version_of(name)?)))
        .max_by(|(_, a), (_, b)| compare_versions(a, b))
        .map(|(name, _)| name.to_string())
}

/// A name `--linux-package` accepts: Debian's package name characters only,
/// and a Linux image.
pub fn is_package_name(text: &str) -> bool {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.~".contains(c);
    text.starts_with("linux-image-") && text.chars().all(allowed)
}

/// The kernel command line: `bench` is init, straight from the initramfs
/// (`rdinit=`), its output on the serial console; when init exits Linux
/// panics, and `panic=-1` reboots at once, which `-no-reboot` turns into
/// QEMU's exit. `quiet` keeps the kernel's own messages (below error level)
/// out of the output. A part's words follow `--`: Linux hands what comes
/// after it to init as its arguments, so `bench` gets the same argv as under
/// this kernel's `run_args=` (whose commas separate arguments).
pub fn append(part: Option<&str>) -> String {
    let mut line = String::from("rdinit=/bench console=ttyS0 panic=-1 quiet");
    if let Some(part) = part {
        line += " --";
        for argument in part.split(',') {
            line += " ";
            line += argument;
        }
    }
    line
}

/// `target/linux-6.12/`: in the target directory of the runner's build
/// (whatever `CARGO_TARGET_DIR` says), found from its `OUT_DIR`,
/// `TARGET/PROFILE/build/boot-HASH/out` or `TARGET/PROFILE/build/boot/HASH/out`.
pub fn cache_dir() -> PathBuf {
    target_dir(Path::new(env!("OUT_DIR"))).join("linux-6.12")
}

/// The directory two above the nearest `build` holding `out_dir`.
fn target_dir(out_dir: &Path) -> PathBuf {
    let build = out_dir.ancestors().find(|dir| dir.file_name().is_some_and(|n| n == "build"));
    let target = build.and_then(Path::parent).and_then(Path::parent);
    target.map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

fn run_quietly(program: &str, args: &[&str], dir: &Path) -> std::io::Result<Output> {
    Command::new(program).args(args).current_dir(dir).stdin(Stdio::null()).output()
}

/// The last lines of a command's stderr, indented, for an error message.
fn tail(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    // apt-get's warning that root's download is not sandboxed is not the problem.
    let noise = |l: &str| l.trim().is_empty() || l.contains("Download is performed unsandboxed");
    let lines: Vec<&str> = text.lines().filter(|l| !noise(l)).collect();
    let start = lines.len().saturating_sub(6);
    lines[start..].iter().map(|l| format!("\n    {l}")).collect()
}

/// The unpacked package's `boot/vmlinuz-*`, if it is there.
fn find_vmlinuz(root: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root.join("boot")).ok()?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-")))
        .collect();
    found.sort();
    found.pop()
}

/// The newest package already unpacked in `cache`, for when apt cannot say.
fn newest_cached(cache: &Path) -> Option<String> {
    let entries = std::fs::read_dir(cache).ok()?;
    let names: Vec<String> = entries
        .flatten()
        .filter(|e| find_vmlinuz(&e.path().join("root")).is_some())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .map(|name| format!("{name} - cached"))
        .collect();
    newest_package(&names.join("\n"))
}

/// Which package: the newest that `apt-cache search` lists, else the newest
/// already in the cache.
fn choose(cache: &Path) -> Result<String, SetupError> {
    let searched = Command::new("apt-cache")
        .args(["search", "--names-only", SEARCH])
        .stdin(Stdio::null())
        .output();
    let why = match &searched {
        Ok(output) if output.status.success() => {
            match newest_package(&String::from_utf8_lossy(&output.stdout)) {
                Some(package) => return Ok(package),
                None => format!("apt-cache knows no {PACKAGE_PREFIX}*{PACKAGE_SUFFIX} package"),
            }
        }
        Ok(output) => format!("apt-cache search failed ({}):{}", output.status, tail(output)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            "apt-cache is not installed (bench-user fetches Linux as a Debian package)".into()
        }
        Err(error) => format!("cannot run apt-cache: {error}"),
    };
    if let Some(package) = newest_cached(cache) {
        eprintln!("bench-user: {why}; using {package}, already in {}", cache.display());
        return Ok(package);
    }
    Err(SetupError(format!(
        "{why}.\n\
         Debian 12 has Linux 6.12 in bookworm-security and bookworm-backports, Debian 13 as its \
         kernel. Refresh the package lists with: sudo apt-get update\n\
         See what there is with: apt-cache search '{SEARCH}' | grep -- '{PACKAGE_SUFFIX}'\n\
         Then choose one with --linux-package NAME, or run with --ours-only."
    )))
}

/// The command to do by hand what `fetch` could not.
fn by_hand(dir: &Path, package: &str) -> String {
    format!(
        "mkdir -p {dir} && cd {dir} && apt-get download {package} && \
         dpkg-deb -x {package}_*.deb root",
        dir = dir.display()
    )
}

fn download(dir: &Path, package: &str) -> Result<PathBuf, SetupError> {
    eprintln!(
        "bench-user: fetching {package} with apt-get download into {} (about 110 MB, once)",
        dir.display()
    );
    let started = Instant::now();
    let why = match run_quietly("apt-get", &["download", package], dir) {
        Ok(output) if output.status.success() => match find_deb(dir, package) {
            Some(deb) => {
                eprintln!("bench-user: fetched in {:.1} s", started.elapsed().as_secs_f64());
                return Ok(deb);
            }
            None => "apt-get download succeeded, but no .deb file is there".into(),
        },
        Ok(output) => format!(
            "apt-get download {package} failed ({}):{}\n\
             It needs a network, and package lists that still have {package}.",
            output.status,
            tail(&output)
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            "apt-get is not installed (bench-user fetches Linux as a Debian package)".into()
        }
        Err(error) => format!("cannot run apt-get: {error}"),
    };
    let _ = std::fs::remove_dir(dir); // only if empty: nothing was fetched
    Err(SetupError(format!(
        "{why}\n\
         Fetch and unpack it by hand with:\n    {}\n\
         (`sudo apt-get update` first if apt no longer finds it; another version with \
         --linux-package NAME), then run bench-user again.",
        by_hand(dir, package)
    )))
}

/// The package's .deb in `dir` (`NAME_VERSION_amd64.deb`).
fn find_deb(dir: &Path, package: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    entries.flatten().map(|e| e.path()).find(|path| {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
    })
}

/// `dpkg-deb -x` into `root.partial`, renamed to `root` once complete, so an
/// interrupted unpack is never taken for a finished one.
fn unpack(deb: &Path, dir: &Path, package: &str) -> Result<PathBuf, SetupError> {
    let (partial, root) = (dir.join("root.partial"), dir.join("root"));
    let _ = std::fs::remove_dir_all(&partial);
    let _ = std::fs::remove_dir_all(&root);
    let deb_name = deb.file_name().unwrap_or_default().to_string_lossy().into_owned();
    eprintln!("bench-user: unpacking {deb_name} with dpkg-deb -x");
    let failed = |why: String| {
        SetupError(format!(
            "{why}\nUnpack it by hand with:\n    cd {} && dpkg-deb -x {deb_name} root\n\
             (without dpkg-deb: ar x {deb_name} && mkdir root && tar -xf data.tar.* -C root)",
            dir.display()
        ))
    };
    match run_quietly("dpkg-deb", &["-x", &deb_name, "root.partial"], dir) {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            // Most likely a download cut short: the next run fetches it again.
            let _ = std::fs::remove_file(deb);
            let _ = std::fs::remove_dir_all(&partial);
            return Err(SetupError(format!(
                "dpkg-deb -x {deb_name} failed ({}):{}\n\
                 The file is removed; run bench-user again to fetch it again.",
                output.status,
                tail(&output)
            )));
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(failed("dpkg-deb is not installed (it comes with Debian's dpkg)".into()));
        }
        Err(error) => return Err(failed(format!("cannot run dpkg-deb: {error}"))),
    }
    std::fs::rename(&partial, &root)
        .map_err(|e| SetupError(format!("renaming {partial:?}: {e}")))?;
    find_vmlinuz(&root).ok_or_else(|| {
        SetupError(format!(
            "{package} has no boot/vmlinuz-* (unpacked in {}): is it a kernel image package?",
            root.display()
        ))
    })
}

/// The kernel to boot: `package` (else the newest plain amd64 one apt
/// knows), from `target/linux-6.12/PACKAGE/root/boot/vmlinuz-*`, fetched
/// and unpacked first if it is not there yet. Nothing here reads stdin.
pub fn fetch(package: Option<&str>) -> Result<LinuxImage, SetupError> {
    let cache = cache_dir();
    let package = match package {
        Some(package) => package.to_string(),
        None => choose(&cache)?,
    };
    let dir = cache.join(&package);
    if let Some(vmlinuz) = find_vmlinuz(&dir.join("root")) {
        return Ok(LinuxImage { package, vmlinuz });
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| SetupError(format!("cannot create {}: {e}", dir.display())))?;
    let deb = match find_deb(&dir, &package) {
        Some(deb) => deb,
        None => download(&dir, &package)?,
    };
    let vmlinuz = unpack(&deb, &dir, &package)?;
    Ok(LinuxImage { package, vmlinuz })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `apt-cache search '^linux-image-6.12'` on Debian 12, shortened.
    const SEARCH_OUTPUT: &str = "\
linux-image-6.12-amd64-dbg - Debugging symbols for Linux amd64 configuration (meta-package)
linux-image-6.12-amd64-signed-template - Template for signed linux-image packages for amd64
linux-image-6.12.99+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.113+deb12-amd64-dbg - Debug symbols for linux-image-6.12.113+deb12-amd64
linux-image-6.12.113+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.117+deb12-cloud-amd64-unsigned - Linux 6.12 for x86-64 cloud
linux-image-6.12.117+deb12-rt-amd64-unsigned - Linux 6.12 for 64-bit PCs, PREEMPT_RT
linux-image-6.12.115+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs
linux-image-6.12.117+deb12-amd64-dbg - Debug symbols for linux-image-6.12.117+deb12-amd64
linux-image-6.12.115+deb13-amd64-unsigned - Linux 6.12 for 64-bit PCs
";

    #[test]
    fn the_newest_plain_amd64_package_is_picked() {
        assert_eq!(
            newest_package(SEARCH_OUTPUT).as_deref(),
            Some("linux-image-6.12.115+deb13-amd64-unsigned")
        );
        let without_13 = SEARCH_OUTPUT.replace("deb13", "deb12");
        assert_eq!(
            newest_package(&without_13).as_deref(),
            Some("linux-image-6.12.115+deb12-amd64-unsigned")
        );
        let only_old = "linux-image-6.12.9+deb12-amd64-unsigned - x\n\
                        linux-image-6.12.10+deb12-amd64-unsigned - x\n";
        assert_eq!(
            newest_package(only_old).as_deref(),
            Some("linux-image-6.12.10+deb12-amd64-unsigned")
        );
        assert_eq!(newest_package("linux-image-6.12.113+deb12-cloud-amd64-unsigned - x\n"), None);
        assert_eq!(newest_package("linux-image-6.1.0-9-amd64-unsigned - Linux 6.1\n"), None);
        assert_eq!(newest_package(""), None);
    }

    #[test]
    fn versions_compare_as_numbers() {
        assert_eq!(compare_versions("6.12.99+deb12", "6.12.117+deb12"), Ordering::Less);
        assert_eq!(compare_versions("6.12.117+deb12", "6.12.117+deb13"), Ordering::Less);
        assert_eq!(compare_versions("6.12.117+deb12", "6.12.117+deb12"), Ordering::Equal);
        assert_eq!(compare_versions("6.12.0117", "6.12.117"), Ordering::Equal);
        assert_eq!(short_version("linux-image-6.12.113+deb12-amd64-unsigned"), "6.12.113");
        assert_eq!(short_version("linux-image-custom"), "linux-image-custom");
    }

    #[test]
    fn the_command_line_passes_a_part_after_the_separator() {
        assert_eq!(append(None), "rdinit=/bench console=ttyS0 panic=-1 quiet");
        assert_eq!(append(Some("getpid")), "rdinit=/bench console=ttyS0 panic=-1 quiet -- getpid");
        assert_eq!(
            append(Some("pipe,4096")),
            "rdinit=/bench console=ttyS0 panic=-1 quiet -- pipe 4096"
        );
    }

    #[test]
    fn package_names_are_checked_and_the_cache_is_in_the_target_directory() {
        assert!(is_package_name("linux-image-6.12.113+deb12-amd64-unsigned"));
        assert!(!is_package_name("linux-image-6.12.113 rm"));
        assert!(!is_package_name("bash"));
        assert!(cache_dir().ends_with("linux-6.12"));
        // The target directory is where this build is: OUT_DIR is below it.
        assert!(Path::new(env!("OUT_DIR")).starts_with(cache_dir().parent().unwrap()));
        for out_dir in
            ["/w/build/t/debug/build/boot-0123/out", "/w/build/t/debug/build/boot/0123/out"]
        {
            assert_eq!(target_dir(Path::new(out_dir)), Path::new("/w/build/t"));
        }
        assert_eq!(target_dir(Path::new("/elsewhere/out")), Path::new("target"));
        let hand = by_hand(Path::new("/t/linux-6.12/p"), "p");
        assert_eq!(
            hand,
            "mkdir -p /t/linux-6.12/p && cd /t/linux-6.12/p && apt-get download p && \
             dpkg-deb -x p_*.deb root"
        );
    }
}
