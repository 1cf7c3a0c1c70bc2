//! One self-contained HTML page of a post-mortem (no network fetches): the climb of open fds
//! towards the limit, TCP states over time, the EMFILE moment, and the table of what was held.
use crate::model::session::Postmortem;

/// The page. A first version: the facts as text and tables; the charts come next.
pub fn postmortem_page(p: &Postmortem) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut rows = String::new();
    for g in &p.open_at_end {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td></tr>\n",
            g.count,
            esc(g.state.name()),
            esc(&g.raddr),
            g.oldest_s,
            g.newest_s
        ));
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>connlife post-mortem: pid {pid} ({comm})</title></head><body>\n<h1>pid {pid} ({comm})</h1>\n<p>{ending}</p>\n<p class=\"verdict\">{verdict}</p>\n<p>peak {peak} fds of {limit}</p>\n<table><tr><th>count</th><th>state</th><th>remote</th><th>oldest (s)</th><th>newest (s)</th></tr>\n{rows}</table>\n</body></html>\n",
        pid = p.pid,
        comm = esc(&p.comm),
        ending = esc(&p.ending),
        verdict = esc(&p.verdict),
        peak = p.peak_fds,
        limit = p.fd_limit.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
    )
}
