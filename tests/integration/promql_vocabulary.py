"""What a PromQL query asks of the series it reads, checked against what proxies serve: its
metric names, the labels it matches, groups by or shows in a template, and the values its
matchers compare with. A query on a name, label or value no proxy serves shows nothing and
alerts on nothing, however valid its syntax."""

import re
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

# the labels of every scraped series, whatever the proxy serves
TARGET_LABELS = ("instance", "job")
# a selector: a metric name before `{` or a range `[`, and its matchers if any
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{([^}]*)\}|(?=\[))")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
TEMPLATE_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
# what is left of a query without its selectors, strings, groupings, calls and keywords:
# a metric name with neither `{}` nor a range, which the checks above would not see
WORD = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan"}

Served = dict[str, dict[str, set[str]]]  # series name -> label -> the values served


def served_series(expositions: dict[str, str], job: str) -> Served:
    """The series names, labels and label values in `expositions` (each target's /metrics
    text, by its address), labelled as Prometheus stores them, and `up` for each target."""
    served: Served = defaultdict(lambda: defaultdict(set))
    for instance, text in expositions.items():
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = served[sample.name]
                for name, value in sample.labels.items():
                    if value:  # Prometheus drops a label whose value is empty
                        labels[name].add(value)
                labels["instance"].add(instance)
                labels["job"].add(job)
        served["up"]["instance"].add(instance)
        served["up"]["job"].add(job)
    return served


def unserved(expr: str, served: Served, templates: str = "") -> list[str]:
    """What `expr` (and the `$labels` of its alert's `templates`) asks for that `served` has
    not: each as `name`, `name{label}` or `name{label="value"}`."""
    missing = []
    rest = GROUPING.sub("", SELECTOR.sub("", re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)))
    rest = re.sub(r"\[[^\]]*\]", "", rest)  # durations such as [5m]
    missing += [f"{word} (write {word}{{}}, as the other queries do)"
                for word in WORD.findall(rest) if word.lower() not in KEYWORDS]
    names = []
    for name, matchers in SELECTOR.findall(expr):
        names.append(name)
        if name not in served:
            missing.append(name)
            continue
        for label, operator, value in MATCHER.findall(matchers or ""):
            values = served[name].get(label, set())
            if not values:
                missing.append(f"{name}{{{label}}}")
            elif operator in ("=", "=~") and not _any_matches(operator, value, values):
                missing.append(f'{name}{{{label}{operator}"{value}"}}')
    known = {label for name in names if name in served for label in served[name]}
    grouped = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",")}
    shown = set(TEMPLATE_LABEL.findall(templates))
    missing += [f"{'/'.join(names)}{{{label}}}"
                for label in sorted((grouped | shown) - known - {""})]
    return missing


def _any_matches(operator: str, value: str, values: set[str]) -> bool:
    if operator == "=":
        return value in values
    pattern = re.compile(value.encode().decode("unicode_escape"))
    return any(pattern.fullmatch(v) for v in values)
