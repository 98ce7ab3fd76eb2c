//! Where execvp(3) would find a command hook's program, for `-check`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// musl's execvp(3) search path when `PATH` is unset.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/bin:/usr/bin";

/// What the filesystem holds at a path (symbolic links followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A file with an execute bit.
    Executable,
    /// A file without any execute bit.
    NotExecutable,
    /// A directory.
    Directory,
    /// Nothing (or nothing this process may look at).
    Missing,
}

/// What the real filesystem holds at `path`.
pub fn path_kind(path: &Path) -> PathKind {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => PathKind::Directory,
        Ok(m) if m.permissions().mode() & 0o111 != 0 => PathKind::Executable,
        Ok(_) => PathKind::NotExecutable,
        Err(_) => PathKind::Missing,
    }
}

/// Finds `program` as execvp(3) would, in `path` (`PATH`, else
/// [`DEFAULT_PATH`]), on the filesystem `kind` describes.
///
/// # Errors
/// Why not, in one line.
pub fn locate(
    program: &str,
    path: Option<&str>,
    kind: &dyn Fn(&Path) -> PathKind,
) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("the command is empty".into());
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return match kind(&p) {
            PathKind::Executable => Ok(p),
            PathKind::NotExecutable => Err(format!("{program} is not executable")),
            PathKind::Directory => Err(format!("{program} is a directory")),
            PathKind::Missing => Err(format!("{program} does not exist")),
        };
    }
    let search = path.filter(|p| !p.is_empty()).unwrap_or(DEFAULT_PATH);
    let mut not_executable = None;
    for dir in search.split(':') {
        let candidate = Path::new(if dir.is_empty() { "." } else { dir }).join(program);
        match kind(&candidate) {
            PathKind::Executable => return Ok(candidate),
            PathKind::NotExecutable => {
                not_executable.get_or_insert(candidate);
            }
            PathKind::Directory | PathKind::Missing => {}
        }
    }
    Err(match not_executable {
        Some(p) => format!("{} is not executable", p.display()),
        None => format!("{program} is in no directory of the search path {search}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A filesystem holding `files` (path, kind); everything else missing.
    fn fs(files: &'static [(&'static str, PathKind)]) -> impl Fn(&Path) -> PathKind {
        move |p: &Path| {
            files
                .iter()
                .find(|(f, _)| Path::new(f) == p)
                .map_or(PathKind::Missing, |(_, k)| *k)
        }
    }

    const FILES: &[(&str, PathKind)] = &[
        ("/bin/sh", PathKind::Executable),
        ("/usr/bin/curl", PathKind::Executable),
        ("/usr/local/bin/curl", PathKind::NotExecutable),
        ("/opt/app/notify", PathKind::NotExecutable),
        ("/opt/app", PathKind::Directory),
        ("./run.sh", PathKind::Executable),
        ("bin/tool", PathKind::Executable),
        ("/srv/bin", PathKind::Directory),
    ];

    #[test]
    fn names_with_a_slash_are_taken_as_they_are() {
        let fs = fs(FILES);
        assert_eq!(locate("/bin/sh", None, &fs), Ok("/bin/sh".into()));
        assert_eq!(
            locate("./run.sh", Some("/nowhere"), &fs),
            Ok("./run.sh".into())
        );
        assert_eq!(locate("bin/tool", None, &fs), Ok("bin/tool".into()));
        assert_eq!(
            locate("/usr/bin/nope", None, &fs),
            Err("/usr/bin/nope does not exist".into())
        );
        assert_eq!(
            locate("/opt/app", None, &fs),
            Err("/opt/app is a directory".into())
        );
        assert_eq!(
            locate("/opt/app/notify", None, &fs),
            Err("/opt/app/notify is not executable".into())
        );
    }

    #[test]
    fn other_names_are_searched_in_path_in_order() {
        let fs = fs(FILES);
        // Not executable in the first directory: execvp goes on, and so do we.
        assert_eq!(
            locate("curl", Some("/usr/local/bin:/usr/bin"), &fs),
            Ok("/usr/bin/curl".into())
        );
        assert_eq!(
            locate("curl", Some("/usr/local/bin"), &fs),
            Err("/usr/local/bin/curl is not executable".into())
        );
        assert_eq!(
            locate("sh", Some("/usr/sbin:/bin"), &fs),
            Ok("/bin/sh".into())
        );
        assert_eq!(
            locate("wget", Some("/usr/bin:/bin"), &fs),
            Err("wget is in no directory of the search path /usr/bin:/bin".into())
        );
        // A directory named like the program is skipped.
        assert_eq!(
            locate("bin", Some("/srv:/usr"), &fs),
            Err("bin is in no directory of the search path /srv:/usr".into())
        );
    }

    #[test]
    fn unset_path_is_musls_default_and_empty_entries_are_the_working_directory() {
        let fs = fs(FILES);
        assert_eq!(locate("curl", None, &fs), Ok("/usr/bin/curl".into()));
        assert_eq!(locate("curl", Some(""), &fs), Ok("/usr/bin/curl".into()));
        assert_eq!(
            locate("run.sh", Some("/nowhere::"), &fs),
            Ok("./run.sh".into())
        );
        assert_eq!(
            locate("nope", None, &fs),
            Err(format!(
                "nope is in no directory of the search path {DEFAULT_PATH}"
            ))
        );
        assert_eq!(locate("", None, &fs), Err("the command is empty".into()));
    }

    #[test]
    fn the_real_filesystem() {
        let dir = std::env::temp_dir().join(format!("nlb-program-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("tool");
        let plain = dir.join("data");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::write(&plain, "x").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(path_kind(&exe), PathKind::Executable);
        assert_eq!(path_kind(&plain), PathKind::NotExecutable);
        assert_eq!(path_kind(&dir), PathKind::Directory);
        assert_eq!(path_kind(&dir.join("absent")), PathKind::Missing);
        let search = dir.display().to_string();
        assert_eq!(locate("tool", Some(&search), &path_kind), Ok(exe.clone()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
