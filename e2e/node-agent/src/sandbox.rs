//! The sandbox helper: the agent re-executes itself as `modelhub-node-agent sandbox <spec>`
//! for every container start. The helper (single-threaded, before any workload code runs)
//! joins the pod's network namespace, enters a private mount and UTS namespace, bind-mounts
//! the image's files at [`IMAGE_DIR`] and then the pod's volumes at their mount paths,
//! becomes a session leader (so the agent can signal the whole process group) and finally
//! `exec`s the container's command.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One bind mount of a volume into the container's view of the filesystem.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Where a container sees its image's files: the directory of the mapped binary (with what
/// lies beside it, such as the ONNX Runtime library next to `tinyinfer`), mounted read-only
/// before the volumes, like the filesystem an image brings. The entrypoint runs from here,
/// so a program that looks beside itself finds its files whatever the host path is, even
/// when a volume (an `emptyDir` at `/tmp`, say) covers that host path.
pub const IMAGE_DIR: &str = "/opt/modelhub/bin";

/// Everything the helper needs to start one container process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecSpec {
    pub netns: Option<PathBuf>,
    pub hostname: String,
    /// Host directory holding the image's files, mounted at [`IMAGE_DIR`].
    #[serde(default)]
    pub image_dir: Option<PathBuf>,
    pub mounts: Vec<Mount>,
    pub workdir: Option<PathBuf>,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

fn fail(what: &str, err: impl std::fmt::Display) -> ! {
    // stderr is the container's log file: the reason the container could not start.
    let _ = writeln!(
        std::io::stderr(),
        "modelhub-node-agent sandbox: {what}: {err}"
    );
    std::process::exit(127)
}

fn cstr(p: &Path) -> CString {
    match CString::new(p.as_os_str().as_encoded_bytes()) {
        Ok(c) => c,
        Err(e) => fail("path with NUL byte", e),
    }
}

/// Opens `p` as a path-only descriptor (directories and files alike).
fn open_path(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(p)
}

fn check(rc: libc::c_int, what: &str) {
    if rc != 0 {
        fail(what, std::io::Error::last_os_error());
    }
}

/// The host path of `program` as given in the container's argv: paths under [`IMAGE_DIR`]
/// live in the image directory until it is mounted.
fn host_path_of(program: &str, image_dir: Option<&Path>) -> PathBuf {
    match (image_dir, Path::new(program).strip_prefix(IMAGE_DIR)) {
        (Some(dir), Ok(rest)) => dir.join(rest),
        _ => PathBuf::from(program),
    }
}

/// Whether `path` (as seen now, after the mounts) is the file `file` was opened from.
fn same_file(path: &Path, file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Entry point of the helper; never returns.
pub fn run(spec_path: &Path) -> ! {
    let text = match std::fs::read(spec_path) {
        Ok(t) => t,
        Err(e) => fail("reading the exec spec", e),
    };
    let spec: ExecSpec = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(e) => fail("parsing the exec spec", e),
    };
    if let Some(netns) = &spec.netns {
        let file = match std::fs::File::open(netns) {
            Ok(f) => f,
            Err(e) => fail("opening the network namespace", e),
        };
        // SAFETY: plain syscalls on valid arguments in a single-threaded process.
        check(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            "setns",
        );
    }
    // SAFETY: as above; the new mount namespace is private to this process tree.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS) },
        "unshare",
    );
    let root = cstr(Path::new("/"));
    check(
        unsafe {
            libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        },
        "making / private",
    );
    let host = spec.hostname.as_bytes();
    check(
        unsafe { libc::sethostname(host.as_ptr().cast(), host.len()) },
        "sethostname",
    );
    let mut mounts = spec.mounts.clone();
    mounts.sort_by_key(|m| m.target.components().count());
    // The image comes first: volumes may cover parts of it, as they do in a container.
    if let Some(dir) = &spec.image_dir {
        mounts.insert(
            0,
            Mount {
                source: dir.clone(),
                target: PathBuf::from(IMAGE_DIR),
                read_only: true,
            },
        );
    }
    // A mount may hide the host paths of later sources or of the program (an emptyDir at
    // /work hides /work/main/...), so hold them all open first and use them by descriptor.
    let sources: Vec<std::fs::File> = mounts
        .iter()
        .map(|m| {
            open_path(&m.source)
                .unwrap_or_else(|e| fail(&format!("opening {}", m.source.display()), e))
        })
        .collect();
    let Some((program, args)) = spec.argv.split_first() else {
        fail("empty command", "no argv")
    };
    let program_fd = if program.contains('/') {
        let host_path = host_path_of(program, spec.image_dir.as_deref());
        let f = open_path(&host_path)
            .unwrap_or_else(|e| fail(&format!("opening {}", host_path.display()), e));
        // The descriptor must survive exec for `/proc/self/fd/N` to name the program.
        // SAFETY: clears FD_CLOEXEC on a descriptor this process owns.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFD, 0) };
        Some(f)
    } else {
        None
    };
    for (m, src_file) in mounts.iter().zip(&sources) {
        let is_file = src_file.metadata().map(|md| md.is_file()).unwrap_or(false);
        if !m.target.exists() {
            let made = if is_file {
                m.target
                    .parent()
                    .map(std::fs::create_dir_all)
                    .unwrap_or(Ok(()))
                    .and_then(|_| std::fs::File::create(&m.target).map(|_| ()))
            } else {
                std::fs::create_dir_all(&m.target)
            };
            if let Err(e) = made {
                fail(&format!("creating mount point {}", m.target.display()), e);
            }
        }
        let src = cstr(&PathBuf::from(format!(
            "/proc/self/fd/{}",
            src_file.as_raw_fd()
        )));
        let dst = cstr(&m.target);
        check(
            unsafe {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                )
            },
            &format!("bind-mounting {}", m.target.display()),
        );
        if m.read_only {
            check(
                unsafe {
                    libc::mount(
                        std::ptr::null(),
                        dst.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
                        std::ptr::null(),
                    )
                },
                &format!("remounting {} read-only", m.target.display()),
            );
        }
    }
    // SAFETY: plain syscall; makes this process the leader of a new session and group.
    unsafe { libc::setsid() };
    let mut cmd = match &program_fd {
        // The program's path still names it inside the mounts (the image's entrypoint, or
        // a host program no volume covers): exec it by path, so `/proc/self/exe` and the
        // program's view of where it lives are the container's, not the host's.
        Some(f) if same_file(Path::new(program), f) => std::process::Command::new(program),
        Some(f) => {
            let mut c = std::process::Command::new(format!("/proc/self/fd/{}", f.as_raw_fd()));
            c.arg0(program);
            c
        }
        None => std::process::Command::new(program),
    };
    cmd.args(args).env_clear().envs(spec.env.iter().cloned());
    if let Some(dir) = &spec.workdir {
        if let Err(e) = std::fs::create_dir_all(dir) {
            fail("creating the working directory", e);
        }
        cmd.current_dir(dir);
    }
    let err = cmd.exec();
    fail(&format!("exec {program}"), err)
}
