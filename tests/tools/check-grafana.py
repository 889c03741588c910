#!/usr/bin/env python3
"""check-grafana.py DASHBOARD SRC_ROOT: is the Grafana dashboard valid for
the metrics the worker really exports?

Fails (exit 1, naming the panel and the problem) when: the JSON does not
parse; uid, title, schemaVersion or panels is missing; a panel lacks id,
type, title or gridPos, repeats an id, is wider than the 24-column grid
or overlaps another; a target lacks expr or refId or repeats a refId; an
expression's brackets do not balance; an expression names a metric the
C sources do not export, or a label that metric does not carry; a $var
is not defined in templating.

Labels: each metric's own labels are read from common/metrics.c (the
labelled counters' table, and the fixed series written with fprintf);
Prometheus adds instance and job to every series; histograms' _bucket
has le. Stdlib only.
"""
import glob
import json
import re
import sys

PROM_LABELS = {"instance", "job"}
# PromQL words that look like label or metric names and are not.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right",
            "sum", "max", "min", "avg", "count", "rate", "increase", "irate",
            "delta", "histogram_quantile", "label_values", "and", "or",
            "unless", "offset", "bool", "topk", "bottomk", "abs", "le"}


def metric_labels(src):
    """{metric: set(labels)} from the sources."""
    text = open(f"{src}/common/metrics.c").read()
    allsrc = "".join(open(f).read() for f in
                     glob.glob(f"{src}/common/*.c") + glob.glob(f"{src}/worker/*.c"))
    names = set(re.findall(r'"(despool_[a-z_]+)', allsrc))
    labels = {n: set() for n in names}
    # Labelled counters: {"despool_x_total", "label", ...}
    for n, l in re.findall(r'\{"(despool_[a-z_]+)",\s*"([a-z_]+)",', text):
        labels[n].add(l)
    # Fixed series: despool_x{a=\"...\",b=\"...\"}, once adjacent string
    # literals ("a" "b": one string in C) are joined.
    joined = re.sub(r'"\s*"', "", text)
    for n, body in re.findall(r'"(despool_[a-z_]+)\{([^}]*)\}', joined):
        labels.setdefault(n, set()).update(re.findall(r'([a-z_]+)=', body))
    # The info series are written as fputs("despool_x{site=\"", f).
    for n, l in re.findall(r'fputs\("(despool_[a-z_]+)\{([a-z_]+)=', text):
        labels.setdefault(n, set()).add(l)
    # Histograms: _bucket{le}, _sum, _count.
    for n in re.findall(r'\[DS_H_[A-Z_]+\]\s*=\s*\{"(despool_[a-z_]+)"', text):
        labels[n + "_bucket"] = labels.get(n, set()) | {"le"}
        labels[n + "_sum"] = set(labels.get(n, set()))
        labels[n + "_count"] = set(labels.get(n, set()))
    return labels


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


def check_expr(where, expr, labels, variables, errors):
    if not balanced(expr):
        errors.append(f"{where}: unbalanced brackets or quotes in {expr!r}")
        return
    for v in re.findall(r"\$\{?(\w+)", expr):
        if v not in variables and not v.startswith("__"):
            errors.append(f"{where}: ${v} is not defined in templating")
    bare = re.sub(r'"[^"]*"', '""', expr)         # label values out
    bare = re.sub(r"\[[^\]]*\]", "", bare)         # ranges out
    used = set(re.findall(r"\b(despool_[a-z_]+)\b", bare))
    allowed = set(PROM_LABELS)
    for m in used:
        if m not in labels:
            errors.append(f"{where}: metric {m} is not exported by the worker")
        else:
            allowed |= labels[m]
    for m, body in re.findall(r"\b(despool_[a-z_]+)\{([^}]*)\}", bare):
        for l in re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", body):
            if m in labels and l not in labels[m] | PROM_LABELS:
                errors.append(f"{where}: {m} has no label {l}")
    for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", bare):
        for l in re.findall(r"[a-zA-Z_]\w*", clause):
            if l not in allowed:
                errors.append(f"{where}: label {l} is on none of {sorted(used)}")


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n")[0], file=sys.stderr)
        return 2
    path, src = sys.argv[1:]
    errors = []
    try:
        d = json.load(open(path))
    except (OSError, ValueError) as e:
        print(f"{path}: not valid JSON: {e}")
        return 1
    for k in ("uid", "title", "schemaVersion", "panels"):
        if k not in d:
            errors.append(f"{path}: no {k}")
    labels = metric_labels(src)
    variables = {v.get("name") for v in d.get("templating", {}).get("list", [])}
    for v in d.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if v.get("type") == "query" and isinstance(q, str):
            check_expr(f"variable {v.get('name')}", q, labels, variables, errors)
    ids, boxes = set(), []
    for i, p in enumerate(d.get("panels", [])):
        where = f"panel {p.get('id', '#' + str(i))} ({p.get('title', '?')})"
        for k in ("id", "type", "title", "gridPos"):
            if k not in p:
                errors.append(f"{where}: no {k}")
        if p.get("id") in ids:
            errors.append(f"{where}: id repeated")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        try:
            x, y, w, h = (int(g[k]) for k in ("x", "y", "w", "h"))
        except (KeyError, TypeError, ValueError):
            errors.append(f"{where}: gridPos needs x, y, w, h")
            continue
        if x < 0 or w <= 0 or h <= 0 or x + w > 24:
            errors.append(f"{where}: gridPos {g} is outside the 24-column grid")
        for other, (ox, oy, ow, oh) in boxes:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                errors.append(f"{where}: overlaps {other}")
        boxes.append((where, (x, y, w, h)))
        refs = set()
        for t in p.get("targets", []):
            if "expr" not in t or "refId" not in t:
                errors.append(f"{where}: a target without expr or refId")
                continue
            if t["refId"] in refs:
                errors.append(f"{where}: refId {t['refId']} repeated")
            refs.add(t["refId"])
            check_expr(f"{where} target {t['refId']}", t["expr"], labels, variables, errors)
        if p.get("type") in ("timeseries", "stat") and not p.get("targets"):
            errors.append(f"{where}: no targets")
    for e in errors:
        print(e)
    if errors:
        return 1
    print(f"{path}: {len(d['panels'])} panels, every metric and label exported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
