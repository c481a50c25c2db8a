//! Man pages from the command line's own definition (clap_mangen), for the
//! Debian package: `nftopo man DIR` (a hidden subcommand) writes
//! `nftopo.8` and one `nftopo-SUBCOMMAND.8` per subcommand into DIR.
//! Section 8: nftopo administers the node and needs CAP_NET_ADMIN. The
//! pages are dated `$SOURCE_DATE_EPOCH` (reproducible builds), else today.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use k8s_openapi::jiff::Timestamp;

/// Writes the man pages of `nftopo` and its visible subcommands into
/// `dir` (created if missing).
pub fn write(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = crate::cli::Cli::command().disable_help_subcommand(true);
    // Sets the subcommands' display names (`nftopo-run`), used as page
    // names.
    cmd.build();
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => Timestamp::from_second(s.trim().parse().context("$SOURCE_DATE_EPOCH")?)
            .context("$SOURCE_DATE_EPOCH")?,
        Err(_) => Timestamp::now(),
    }
    .strftime("%Y-%m-%d")
    .to_string();
    page(cmd, dir, &date)
}

fn page(cmd: clap::Command, dir: &Path, date: &str) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub.clone(), dir, date)?;
    }
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .date(date)
        .source(format!("nftopo {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    let path = dir.join(man.get_filename());
    let mut out = Vec::new();
    man.render(&mut out)?;
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_page_per_visible_subcommand_in_section_8() {
        let dir = std::env::temp_dir().join(format!("nftopo-man-{}", std::process::id()));
        super::write(&dir).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let top = std::fs::read_to_string(dir.join("nftopo.8")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(names.contains(&"nftopo.8".to_string()), "{names:?}");
        assert!(names.contains(&"nftopo-run.8".to_string()), "{names:?}");
        assert!(
            !names.iter().any(|n| n.starts_with("nftopo-man")),
            "{names:?}"
        );
        assert!(top.contains(".TH nftopo 8 20"), "{top}");
    }
}
