"""JavaScript the browser tests evaluate in the page, the figure's trace indices, and the
steps every JupyterLab test starts with (open a notebook in its own workspace, Run All)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

FIGURE = "document.querySelector('.js-plotly-plot.xb-figure')"  # plotly 7 draws into the widget's own div
TRAIN_LOSS, BATCH_LOSS, LR_MARKS = 0, 2, 5  # trace indices in exburn_nb.widgets.plot.make_figure

# JupyterLab's status bar: the notebook's kernel status ('Idle', 'Busy', ...); '' while it reads
# "No Kernel" or "Initializing". (The toolbar's execution indicator reads idle from the start,
# kernel or not, so it does not say the notebook is connected.)
KERNEL_STATUS = ("() => document.querySelector('#jp-main-statusbar')?.innerText"
                 ".match(/\\|\\s*(Idle|Busy|Starting|Unknown|Restarting|Dead|"
                 "Connecting|Disconnected)/)?.[1] ?? ''")
KERNEL_CONNECTED = f"""() => ({KERNEL_STATUS})() === 'Idle' &&
    !document.querySelector('#jp-main-statusbar').innerText.includes('No Kernel')"""
# a widget output still waiting for its model: the widget manager loads the models from the
# kernel only once the notebook is connected to it
WIDGET_LOADING = ("() => document.querySelector('.jp-NotebookPanel')?.innerText"
                  ".includes('Loading widget...')")

CLICK_UNTIL_STATUS = """async ([button, prefix]) => {
    // Click, then poll the status text: seconds from the click to the first status that
    // starts with `prefix` (-1 after 30 s). Measured here, not around Playwright's click.
    const t0 = performance.now();
    document.querySelector(button).click();
    const status = () => (document.querySelector('.xb-status')?.textContent ?? '').trim();
    while (!status().startsWith(prefix)) {
        if (performance.now() - t0 > 30000) return -1;
        await new Promise(r => setTimeout(r, 10));
    }
    return (performance.now() - t0) / 1000;
}"""

LAYOUT_PROBLEMS = """() => {
    // What a person would see as broken: controls sticking out of the dashboard or the
    // notebook, a figure narrower than its dashboard, the legend over the plotting area,
    // odd accuracy ticks.
    const box = e => e.getBoundingClientRect();
    const dash = document.querySelector('.xb-dashboard'), d = box(dash);
    const problems = [];
    const panel = dash.closest('.jp-NotebookPanel, .jp-OutputArea, body');
    if (d.right > box(panel).right + 1) problems.push(`dashboard right ${d.right} > ${box(panel).right}`);
    for (const e of dash.querySelectorAll('.xb-row > *, .xb-control, button')) {
        const b = box(e);
        if (b.width && (b.right > d.right + 1 || b.left < d.left - 1))
            problems.push(`${e.className.split(' ').filter(c => c.startsWith('xb-') || c.startsWith('widget-'))[0]} [${b.left|0}, ${b.right|0}] outside [${d.left|0}, ${d.right|0}]`);
    }
    const fig = dash.querySelector('.js-plotly-plot.xb-figure'), f = box(fig);
    if (f.width < 0.95 * d.width) problems.push(`figure ${f.width|0} px wide in a ${d.width|0} px dashboard`);
    const svg = fig.querySelector('.main-svg');
    if (svg && box(svg).width < 0.95 * d.width) problems.push(`plot ${box(svg).width|0} px in ${d.width|0}`);
    const legend = fig.querySelector('g.legend'), area = fig.querySelector('.nsewdrag');
    if (legend && area) {
        // the entries a person sees (the legend group's own box includes its clip area)
        const items = [...legend.querySelectorAll('g.traces')].map(box);
        const l = {left: Math.min(...items.map(b => b.left)), right: Math.max(...items.map(b => b.right)),
                   top: Math.min(...items.map(b => b.top)), bottom: Math.max(...items.map(b => b.bottom))};
        const a = box(area);
        const overlap = Math.min(l.right, a.right) > Math.max(l.left, a.left) + 2 &&
                        Math.min(l.bottom, a.bottom) > Math.max(l.top, a.top) + 2;  // 2 px: touching
        if (overlap) problems.push(`the legend [${l.top|0}, ${l.bottom|0}] overlaps the plotting area [${a.top|0}, ${a.bottom|0}]`);
        for (const title of fig.querySelectorAll('.g-xtitle text, .g-ytitle text, .g-y2title text')) {
            const t = box(title);
            if (Math.min(l.right, t.right) > Math.max(l.left, t.left) &&
                Math.min(l.bottom, t.bottom) > Math.max(l.top, t.top))
                problems.push(`the legend overlaps the axis title ${title.textContent}`);
        }
    }
    // "log scale" keeps its place on the progress bar's line however long the progress text
    const bar = dash.querySelector('.xb-progress');
    const logScale = [...dash.querySelectorAll('.widget-checkbox')].find(e => e.textContent.includes('log scale'));
    const middle = b => (b.top + b.bottom) / 2;
    if (!bar || !logScale) problems.push('no progress bar or log-scale toggle');
    else if (Math.abs(middle(box(bar)) - middle(box(logScale))) > 12)
        problems.push(`"log scale" at y ${middle(box(logScale))|0}, off the progress bar's line at ${middle(box(bar))|0}`);
    const ticks = [...fig.querySelectorAll('g.y2tick text')].map(t => t.textContent);
    if (!ticks.length || ticks.some(t => !/^\\d+%$/.test(t))) problems.push(`accuracy ticks ${ticks}`);
    return problems;
}"""

OUTPUT_LAYOUT_PROBLEMS = """() => {
    // In every rendered output area of the notebook: figures, tables and widgets that stick
    // out of it or out of a box that clips them, an output area that scrolls sideways, and
    // a plotly title over the top tick label of its y axis (or parallel axes). A pandas
    // DataFrame printed by a cell scrolls sideways in its own output, as JupyterLab shows
    // every wide DataFrame: that is not counted.
    const box = e => e.getBoundingClientRect();
    const name = e => (e.className?.baseVal ?? e.className ?? e.tagName).toString()
        .split(' ').filter(c => c.startsWith('xb-') || c.startsWith('widget-') || c === 'main-svg'
                            || c === 'js-plotly-plot')[0] ?? e.tagName.toLowerCase();
    const overlaps = (a, b) => Math.min(a.right, b.right) > Math.max(a.left, b.left) + 1 &&
                               Math.min(a.bottom, b.bottom) > Math.max(a.top, b.top) + 1;
    const problems = [];
    for (const out of document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output')) {
        const o = box(out);
        if (!o.width || !o.height) continue;  // not laid out (off screen)
        const frame = out.querySelector('table.dataframe');
        if (out.scrollWidth > out.clientWidth + 1 && !frame)
            problems.push(`an output area scrolls sideways (${out.scrollWidth} > ${out.clientWidth} px)`);
        for (const e of out.querySelectorAll('.js-plotly-plot, .js-plotly-plot .main-svg, table, .jupyter-widgets')) {
            const b = box(e);
            if (!b.width || e.closest('.xb-export-only') || e.matches('table.dataframe')) continue;
            for (let a = e.parentElement; a && a !== out.parentElement; a = a.parentElement) {
                if (a !== out && getComputedStyle(a).overflowX === 'visible') continue;
                const r = box(a);
                if (b.right > r.right + 1 || b.left < r.left - 1) {
                    const owner = [...(e.closest('[class*="xb-"]')?.classList ?? [])]
                        .find(c => c.startsWith('xb-')) ?? 'a notebook output';
                    problems.push(`${name(e)} of ${owner} [${b.left|0}, ${b.right|0}] outside ${a === out ? 'the output area' : name(a)} [${r.left|0}, ${r.right|0}]`);
                    break;
                }
            }
        }
        for (const fig of out.querySelectorAll('.js-plotly-plot')) {
            const title = fig.querySelector('.g-gtitle text');
            if (!title || !title.textContent.trim()) continue;
            const t = box(title);
            const ticks = [...fig.querySelectorAll('g.ytick text, g.y2tick text, .parcoords .axis .tick text, .parcoords text.axis-title')]
                .map(box).filter(b => b.width);
            if (!ticks.length) continue;
            const top = ticks.reduce((a, b) => (b.top < a.top ? b : a));
            const hit = overlaps(t, top) ? top : ticks.find(b => overlaps(t, b));
            if (hit)
                problems.push(`the title "${title.textContent.slice(0, 40)}" [${t.top|0}, ${t.bottom|0}] overlaps a tick label [${hit.top|0}, ${hit.bottom|0}] (the top one: [${top.top|0}, ${top.bottom|0}])`);
        }
    }
    return problems;
}"""

KERNEL_IDLE = ("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session"
               "?.kernel?.status === 'idle'")
# Record, per comm id, every comm_open and comm_close the page sends or receives on its
# notebook's kernel connection (a message is recorded as it arrives, before JupyterLab
# handles it): a "Comm not found for comm id ..." console error is then explained by what
# the page got for that id (nothing, two closes, another session, ...). True once installed.
COMM_RECORDER = """() => {
    const kernel = window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel;
    if (!kernel) return false;
    if (window.__xbComms) return true;
    const comms = window.__xbComms = new Map();
    kernel.anyMessage.connect((_, {msg, direction}) => {
        const id = msg.content?.comm_id, type = msg.header.msg_type;
        if (!id || (type !== 'comm_open' && type !== 'comm_close')) return;
        const seen = comms.get(id) ?? [];
        seen.push(`${direction} ${type} on ${msg.channel} in session ` +
                  `${msg.header.session.slice(0, 8)} at ${(performance.now() / 1000).toFixed(3)} s`);
        comms.set(id, seen);
    });
    return true;
}"""


def open_notebook(page, lab: dict, name: str, notebook: Path | None = None) -> None:
    """Open ``<lab dir>/<name>.ipynb`` (a fresh copy of ``notebook`` when given) in its own
    workspace, so no tab of an earlier test is restored and it gets its own kernel; install
    :data:`COMM_RECORDER` on its kernel connection and wait until the kernel is idle."""
    if notebook is not None:
        shutil.copy(notebook, lab["dir"] / f"{name}.ipynb")
    page.goto(f"{lab['base']}/lab/workspaces/{name}/tree/{name}.ipynb?reset&token={lab['token']}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
    page.wait_for_function(COMM_RECORDER, timeout=120_000, polling=50)
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)


def comm_history(page, problems: list[str]) -> list[str]:
    """For each "Comm not found for comm id X" among ``problems`` (console messages), what
    the page sent and received about comm X (see :data:`COMM_RECORDER`)."""
    ids = sorted(set(re.findall(r"Comm not found for comm id (\w+)", "\n".join(problems))))
    if not ids:
        return []
    got = page.evaluate("ids => ids.map(id => [id, window.__xbComms?.get(id) ?? []])", ids)
    return [f"comm {comm}: {'; '.join(seen) or 'nothing sent or received'}"
            for comm, seen in got]


def run_all(page) -> None:
    """Run → Run All Cells, from JupyterLab's menu bar."""
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")


def open_and_run_all(page, lab: dict, name: str, notebook: Path | None = None) -> None:
    """:func:`open_notebook`, then :func:`run_all`."""
    open_notebook(page, lab, name, notebook)
    run_all(page)
