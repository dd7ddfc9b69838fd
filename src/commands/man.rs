//! `scimd man --out DIR`: the manual pages, scimd(1) and one per command (scimd-serve(1),
//! scimd-tenant-create(1), ...), rendered by clap_mangen from the same clap definitions
//! as `--help`, so the two cannot disagree. The description sections are `cli::text`'s.

use super::CommandError;
use std::path::Path;

use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;

/// Writes every page into `out` (created if missing), mode 644: a manual is for everyone,
/// whatever the service's umask.
pub fn write_pages(out: &Path) -> Result<(), CommandError> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut root = crate::cli::command().disable_help_subcommand(true);
    root.build();
    let mut pending = vec![root];
    // The tree is a few dozen commands deep-first; each is rendered once.
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let page = render(&cmd)?;
        let path = out.join(Man::new(cmd).get_filename());
        crate::certs::write_file(&path, &page, 0o644)?;
        println!("{}", path.display());
    }
    Ok(())
}

/// One page: NAME, SYNOPSIS, the command's own sections, OPTIONS, its subcommands.
pub fn render(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let man = Man::new(cmd.clone()).source(concat!("scimd ", env!("CARGO_PKG_VERSION"))).manual("scimd manual");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    if let Some(text) = cmd.get_after_long_help() {
        sections(&text.to_string()).to_writer(&mut page)?;
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut page)?;
    }
    Ok(page)
}

/// `cli::text`'s layout in roff: a line in capitals is a section heading, a line indented
/// four spaces is running text (a blank line starts a paragraph), deeper lines are kept
/// as they are (commands, file formats).
fn sections(text: &str) -> Roff {
    let mut roff = Roff::default();
    let mut verbatim = false;
    for line in text.lines() {
        let deep = line.starts_with("        ");
        if verbatim && !deep {
            roff.control("fi", [] as [&str; 0]);
            verbatim = false;
        }
        if line.trim().is_empty() {
            roff.control("PP", [] as [&str; 0]);
        } else if !line.starts_with(' ') {
            roff.control("SH", [line.trim()]);
        } else if deep {
            if !verbatim {
                roff.control("nf", [] as [&str; 0]);
                verbatim = true;
            }
            roff.text([roman(&line[8..])]);
        } else {
            roff.text([roman(line.trim())]);
        }
    }
    if verbatim {
        roff.control("fi", [] as [&str; 0]);
    }
    roff
}
