#!/usr/bin/env python3
"""check-grafana.py DASHBOARD SRC_ROOT: is the Grafana dashboard valid for
the metrics the worker really exports?

Fails (exit 1, naming the panel and the problem) when: the JSON does not
parse; uid, title, schemaVersion or panels is missing; a panel lacks id,
type, title or gridPos, repeats an id, is wider than the 24-column grid
or overlaps another; a target lacks expr or refId or repeats a refId; an
expression's brackets do not balance; an expression names a metric the
C sources do not export, or a label that metric does not carry; a $var
is not defined in templating (or, in a data source uid, __inputs).

Metrics: every "despool_..." string literal in common/*.c and worker/*.c.
A histogram is queried as _bucket, _sum or _count; its bare name is not a
series and is refused.

Labels are read from the source, not kept in a table here: each metric's
own labels come from common/metrics.c (the labelled counters' table
{"name", "label", ...}, the fixed series written with fprintf, the info
series written with fputs("name{label=\"")); Prometheus adds instance
and job to every series; histograms' _bucket has le. A {...} matcher must
name a label of the metric it follows. A by/without/on/ignoring/
group_left/group_right clause may name a label of any metric of its
expression (a join such as "* on (instance) group_left (site)
despool_worker_info" brings site onto the other side). Stdlib only.
"""
import glob
import json
import re
import sys

PROM_LABELS = {"instance", "job"}
# A metric name as a query writes it (\w: a typo in upper case or with a
# digit is still caught as a name, not skipped).
METRIC = r"despool_\w+"
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_labels(src):
    """({metric: set(labels)}, {histogram base names}) from the sources."""
    text = open(f"{src}/common/metrics.c").read()
    allsrc = "".join(open(f).read() for f in
                     glob.glob(f"{src}/common/*.c") + glob.glob(f"{src}/worker/*.c"))
    names = set(re.findall(r'"(' + METRIC + ')', allsrc))
    labels = {n: set() for n in names}
    # Labelled counters: {"despool_x_total", "label", ...}
    for n, l in re.findall(r'\{"(' + METRIC + r')",\s*"(\w+)",', text):
        labels[n].add(l)
    # Fixed series: despool_x{a=\"...\",b=\"...\"}, once adjacent string
    # literals ("a" "b": one string in C) are joined.
    joined = re.sub(r'"\s*"', "", text)
    for n, body in re.findall(r'"(' + METRIC + r')\{([^}]*)\}', joined):
        labels.setdefault(n, set()).update(re.findall(r'(\w+)=', body))
    # The info series are written as fputs("despool_x{site=\"", f).
    for n, l in re.findall(r'fputs\("(' + METRIC + r')\{(\w+)=', text):
        labels.setdefault(n, set()).add(l)
    # Histograms: _bucket{le}, _sum, _count.
    hists = set(re.findall(r'\[DS_H_[A-Z_]+\]\s*=\s*\{"(' + METRIC + ')"', text))
    for n in hists:
        base = labels.pop(n, set())
        labels[n + "_bucket"] = base | {"le"}
        labels[n + "_sum"] = set(base)
        labels[n + "_count"] = set(base)
    return labels, hists


def balanced(expr):
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    in_str = None
    for c in expr:
        if in_str:
            if c == in_str:
                in_str = None
            continue
        if c in "\"'":
            in_str = c
        elif c in "([{":
            stack.append(c)
        elif c in ")]}":
            if not stack or stack.pop() != pairs[c]:
                return False
    return not stack and in_str is None


def check_vars(where, text, variables, errors):
    for v in re.findall(r"\$\{?(\w+)", text):
        if v not in variables and not v.startswith("__"):
            errors.append(f"{where}: ${v} is not defined in templating")


def check_datasource(where, ds, variables, inputs, errors):
    """A data source uid such as ${datasource} or ${DS_PROMETHEUS}."""
    uid = ds.get("uid") if isinstance(ds, dict) else ds
    if isinstance(uid, str):
        check_vars(f"{where} datasource", uid, variables | inputs, errors)


def check_expr(where, expr, labels, hists, variables, errors):
    if not balanced(expr):
        errors.append(f"{where}: unbalanced brackets or quotes in {expr!r}")
        return
    check_vars(where, expr, variables, errors)
    bare = re.sub(r'"[^"]*"', '""', expr)         # label values out
    bare = re.sub(r"\[[^\]]*\]", "", bare)         # ranges out
    used = set(re.findall(r"\b(" + METRIC + r")\b", bare))
    allowed = set(PROM_LABELS)
    for m in used:
        if m in hists:
            errors.append(f"{where}: {m} is a histogram: query "
                          + ", ".join(m + s for s in HIST_SUFFIXES))
        elif m not in labels:
            errors.append(f"{where}: metric {m} is not exported by the worker")
        else:
            allowed |= labels[m]
    for m, body in re.findall(r"\b(" + METRIC + r")\{([^}]*)\}", bare):
        for l in re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", body):
            if m in labels and l not in labels[m] | PROM_LABELS:
                errors.append(f"{where}: {m} has no label {l}")
    for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", bare):
        for l in re.findall(r"[a-zA-Z_]\w*", clause):
            if l not in allowed:
                errors.append(f"{where}: label {l} is on none of {sorted(used)}")


def check_panel(where, p, labels, hists, variables, inputs, errors):
    """Everything but the layout, which needs all the panels."""
    for k in ("id", "type", "title", "gridPos"):
        if k not in p:
            errors.append(f"{where}: no {k}")
    if "datasource" in p:
        check_datasource(where, p["datasource"], variables, inputs, errors)
    targets = p.get("targets", [])
    if not isinstance(targets, list):
        errors.append(f"{where}: targets is not a list")
        targets = []
    refs = set()
    for t in targets:
        if not isinstance(t, dict) or "expr" not in t or "refId" not in t:
            errors.append(f"{where}: a target without expr or refId")
            continue
        if t["refId"] in refs:
            errors.append(f"{where}: refId {t['refId']} repeated")
        refs.add(t["refId"])
        if "datasource" in t:
            check_datasource(f"{where} target {t['refId']}", t["datasource"],
                             variables, inputs, errors)
        if not isinstance(t["expr"], str) or not t["expr"].strip():
            errors.append(f"{where} target {t['refId']}: empty expr")
            continue
        check_expr(f"{where} target {t['refId']}", t["expr"], labels, hists,
                   variables, errors)
    if p.get("type") in ("timeseries", "stat") and not targets:
        errors.append(f"{where}: no targets")


def grid_box(where, p, errors):
    """(x, y, w, h), or None (reported) when gridPos is unusable."""
    g = p.get("gridPos")
    if g is None:
        return None                                  # reported as "no gridPos"
    try:
        x, y, w, h = (int(g[k]) for k in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        errors.append(f"{where}: gridPos needs integer x, y, w, h")
        return None
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > 24:
        errors.append(f"{where}: gridPos {g} is outside the 24-column grid")
    return x, y, w, h


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n")[0], file=sys.stderr)
        return 2
    path, src = sys.argv[1:]
    errors = []
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{path}: not valid JSON: {e}")
        return 1
    if not isinstance(d, dict):
        print(f"{path}: not a dashboard (a JSON object)")
        return 1
    for k in ("uid", "title", "schemaVersion", "panels"):
        if k not in d:
            errors.append(f"{path}: no {k}")
    panels = d.get("panels", [])
    if not isinstance(panels, list):
        errors.append(f"{path}: panels is not a list")
        panels = []
    try:
        labels, hists = metric_labels(src)
    except OSError as e:
        print(f"{src}: cannot read the C sources: {e}")
        return 1
    if not labels:
        errors.append(f"{src}: no despool_ metric found in common/*.c, worker/*.c")
    tlist = d.get("templating", {}).get("list", [])
    variables = {v.get("name") for v in tlist if isinstance(v, dict)}
    inputs = {i.get("name") for i in d.get("__inputs", []) if isinstance(i, dict)}
    for v in tlist:
        if not isinstance(v, dict):
            continue
        where = f"variable {v.get('name')}"
        if "datasource" in v:
            check_datasource(where, v["datasource"], variables, inputs, errors)
        cur = v.get("current", {})
        if v.get("type") == "datasource" and isinstance(cur, dict):
            check_vars(f"{where} current", str(cur.get("value", "")),
                       variables | inputs, errors)
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and isinstance(q, str):
            check_expr(where, q, labels, hists, variables, errors)
    ids, boxes = set(), []
    for i, p in enumerate(panels):
        if not isinstance(p, dict):
            errors.append(f"panel #{i}: not a JSON object")
            continue
        where = f"panel {p.get('id', '#' + str(i))} ({p.get('title', '?')})"
        if "id" in p:
            if p["id"] in ids:
                errors.append(f"{where}: id repeated")
            ids.add(p["id"])
        check_panel(where, p, labels, hists, variables, inputs, errors)
        box = grid_box(where, p, errors)
        if box is None:
            continue
        x, y, w, h = box
        for other, (ox, oy, ow, oh) in boxes:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                errors.append(f"{where}: overlaps {other}")
        boxes.append((where, box))
    for e in errors:
        print(e)
    if errors:
        return 1
    print(f"{path}: {len(panels)} panels, every metric and label exported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
