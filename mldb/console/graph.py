"""A lineage graph laid out left to right and drawn as SVG on the server, so the page needs no JavaScript.

The layout is the classic layered one, with networkx doing the graph work: cycles are broken (a
table written with the predictions of a model trained on it), ``topological_generations`` gives
each node its column (a node sits right of everything upstream of it), and a few barycentric sweeps
order each column by the mean position of its neighbours, which removes most edge crossings. The
drawing is data (boxes and curves with coordinates), rendered by the Jinja template
``lineage_graph.svg`` (autoescaped, so names are escaped); the console page includes that template
and ``/charts/lineage.svg`` renders it alone. The same nodes and edges give the same picture.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from pathlib import Path
from statistics import fmean

import jinja2
import networkx as nx

NODE_WIDTH, NODE_HEIGHT = 180, 40
GAP_X, GAP_Y = 90, 18
MARGIN, LEGEND_HEIGHT, LOOP_DEPTH = 16, 34, 36
MAX_LABEL = 24  # characters shown in a box; the full name is in its <title>
SWEEPS = 4

NODE_STYLES = {  # kind: (legend text, fill, stroke)
    "table": ("table", "#e3ecfb", "#2457c5"),
    "view": ("view", "#eef1f5", "#6b7385"),
    "model_version": ("model version", "#fdf0dc", "#b35c00"),
    "deployed": ("deployed version", "#d5f0dc", "#17803d"),
    "output": ("table written by a model", "#f1e6fa", "#7a3db8"),
    "embedding_model": ("embedding model", "#fde2e4", "#c0262d"),
}
EDGE_COLOURS = {"training": "#5b6b8c", "view": "#9aa3b5", "prediction": "#b35c00", "embedding": "#c0262d"}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not allowed in XML, even as references


@dataclasses.dataclass
class Box:
    id: str
    label: str  # as shown: maybe truncated
    title: str  # the full text of the tooltip
    subtitle: str
    kind: str
    href: str | None
    x: float
    y: float
    fill: str
    stroke: str
    dashed: bool  # a relation that no longer exists
    focus: bool


@dataclasses.dataclass
class Curve:
    source: str
    target: str
    kind: str
    d: str  # the SVG path
    colour: str
    back: bool  # closes a cycle: drawn as a loop under the boxes
    title: str


def layout(nodes: list[str], edges: list[tuple[str, str]]) -> tuple[dict[str, tuple[int, int]], dict]:
    """``({node: (column, row)}, {(source, target): [bend, ...]})``: an edge spanning several columns
    passes through a bend (a placeholder node) in each column between, so it goes around the boxes there.
    ``edges`` come in order of preference: a cycle loses its last-listed edge (then drawn as a loop)."""
    dag = acyclic(nodes, edges)
    column = {node: c for c, generation in enumerate(nx.topological_generations(dag)) for node in generation}
    layered, bends = nx.DiGraph(), {}
    layered.add_nodes_from(dag)
    for source, target in sorted(dag.edges):
        between = range(column[source] + 1, column[target])
        bends[source, target] = [_bend(source, target, c) for c in between]
        column.update(zip(bends[source, target], between))
        nx.add_path(layered, [source, *bends[source, target], target])
    columns = [[] for _ in range(1 + max(column.values(), default=-1))]
    for node in sorted(layered):
        columns[column[node]].append(node)
    _order(columns, layered)
    places = {node: (c, row) for c, members in enumerate(columns) for row, node in enumerate(members)}
    return places, bends


def _bend(source: str, target: str, column: int) -> str:
    return f"\x00{source}\x00{target}\x00{column}"  # (no name starts with a NUL)


def acyclic(nodes: list[str], edges: list[tuple[str, str]]) -> nx.DiGraph:
    """The graph without the edges that close cycles (of each cycle, the edge listed last)."""
    dag = nx.DiGraph()
    dag.add_nodes_from(sorted(nodes))
    rank = {}
    for position, (source, target) in enumerate(edges):
        if source != target and (source, target) not in rank:
            rank[source, target] = position
            dag.add_edge(source, target)
    while cyclic := sorted(sorted(c) for c in nx.strongly_connected_components(dag) if len(c) > 1):
        for component in cyclic:  # (a cycle lies within one strongly connected component)
            cycle = nx.find_cycle(nx.DiGraph(sorted(dag.subgraph(component).edges)))  # (sorted: deterministic)
            dag.remove_edge(*max(((u, v) for u, v, *_ in cycle), key=rank.__getitem__))
    return dag


def _order(columns: list[list[str]], dag: nx.DiGraph) -> None:
    """Barycentric sweeps, left to right then back: each column sorted by its neighbours' mean position."""
    position = _centred(columns)
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        neighbours = dag.predecessors if forward else dag.successors
        for members in (columns[1:] if forward else columns[-2::-1]):
            members.sort(key=lambda node: (_barycentre(node, neighbours, position), position[node], node))
            position.update(_centred([members]))


def _centred(columns: list[list[str]]) -> dict[str, float]:
    return {node: row - (len(members) - 1) / 2 for members in columns for row, node in enumerate(members)}


def _barycentre(node: str, neighbours, position: dict[str, float]) -> float:
    around = [position[other] for other in neighbours(node)]
    return fmean(around) if around else position[node]


def drawing(nodes: list[dict], edges: list[dict], focus: set[str] = frozenset()) -> dict:
    """Everything the SVG template needs: boxes and curves with coordinates, the size, the legend.

    ``nodes``: dicts with ``id, label, kind, href`` (and ``deployed``, ``exists``, ``subtitle``);
    ``edges``: dicts with ``source, target, kind``, in order of preference for breaking cycles.
    """
    places, bends = layout([node["id"] for node in nodes], [(edge["source"], edge["target"]) for edge in edges])
    sizes = collections.Counter(column for column, _ in places.values())
    rows, top = max(sizes.values(), default=0), MARGIN + LEGEND_HEIGHT
    corners = {node: _corner(column, row, sizes[column], rows, top) for node, (column, row) in places.items()}
    boxes = [_box(node, corners[node["id"]], node["id"] in focus) for node in nodes]
    boxes.sort(key=lambda box: (box.x, box.y))
    curves = [_curve(edge, corners, bends.get((edge["source"], edge["target"])))
              for edge in edges if edge["source"] != edge["target"]]
    loops = LOOP_DEPTH if any(curve.back for curve in curves) else 0
    legend = _legend()
    width = max(MARGIN * 2 + max(_columns(places), 1) * (NODE_WIDTH + GAP_X) - GAP_X, legend[-1]["end"] + MARGIN)
    height = top + max(rows, 1) * (NODE_HEIGHT + GAP_Y) - GAP_Y + loops + MARGIN
    return {"width": width, "height": height, "boxes": [vars(box) for box in boxes],
            "curves": [vars(curve) for curve in curves], "legend": legend,
            "node_width": NODE_WIDTH, "node_height": NODE_HEIGHT,
            "markers": [{"kind": kind, "colour": colour} for kind, colour in EDGE_COLOURS.items()],
            "empty": not nodes}


def _columns(places: dict) -> int:
    return 1 + max((column for column, _ in places.values()), default=-1)


def _corner(column: int, row: int, in_column: int, rows: int, top: float) -> tuple[float, float]:
    """The top-left corner of a box: columns left to right, each centred vertically."""
    offset = (rows - in_column) / 2
    return MARGIN + column * (NODE_WIDTH + GAP_X), top + (row + offset) * (NODE_HEIGHT + GAP_Y)


def _box(node: dict, corner: tuple[float, float], focus: bool) -> Box:
    kind = "deployed" if node.get("deployed") else node["kind"]
    _, fill, stroke = NODE_STYLES.get(kind, NODE_STYLES["table"])
    label = printable(node["label"])
    shown = label if len(label) <= MAX_LABEL else label[:MAX_LABEL - 1] + "…"
    subtitle = printable(node.get("subtitle") or NODE_STYLES.get(kind, ("",))[0])
    return Box(node["id"], shown, f"{label} ({subtitle})", subtitle, kind, node.get("href"),
               round(corner[0], 1), round(corner[1], 1), fill, stroke, not node.get("exists", True), focus)


def _curve(edge: dict, corners: dict, bends: list[str] | None) -> Curve:
    (sx, sy), (tx, ty) = corners[edge["source"]], corners[edge["target"]]
    if bends is None:  # closes a cycle: a loop under both boxes, from the source's bottom to the target's
        x1, y1, x2, y2 = sx + NODE_WIDTH / 2, sy + NODE_HEIGHT, tx + NODE_WIDTH / 2 + 8, ty + NODE_HEIGHT
        low = max(y1, y2) + LOOP_DEPTH
        d = f"M{x1:g},{y1:g} C{x1:g},{low:g} {x2:g},{low:g} {x2:g},{y2:g}"
    else:  # from the source's right side to the target's left, straight through each bend's slot
        middle = NODE_HEIGHT / 2
        points = [(sx + NODE_WIDTH, sy + middle)]
        for bend in bends:
            bx, by = corners[bend]
            points += [(bx, by + middle), (bx + NODE_WIDTH, by + middle)]
        points.append((tx, ty + middle))
        d = f"M{points[0][0]:g},{points[0][1]:g}"
        for (x1, y1), (x2, y2) in zip(points[::2], points[1::2]):
            bend = (x2 - x1) / 2
            d += f" C{x1 + bend:g},{y1:g} {x2 - bend:g},{y2:g} {x2:g},{y2:g}"
            d += "" if (x2, y2) == points[-1] else f" L{x2 + NODE_WIDTH:g},{y2:g}"
    title = printable(f"{edge['source']} → {edge['target']} ({edge['kind']})")
    kind = edge["kind"] if edge["kind"] in EDGE_COLOURS else "training"
    return Curve(edge["source"], edge["target"], kind, d, EDGE_COLOURS[kind], bends is None, title)


def _legend() -> list[dict]:
    items, x = [], MARGIN
    for kind, (text, fill, stroke) in NODE_STYLES.items():
        end = x + 23 + 6.5 * len(text)
        items.append({"kind": kind, "text": text, "fill": fill, "stroke": stroke, "x": x, "end": end})
        x = end + 14
    return items


def printable(text: str) -> str:
    """``text`` without the control characters XML cannot carry (a hostile name must not break the SVG)."""
    return _CONTROL.sub("\ufffd", str(text))


_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                                autoescape=True, undefined=jinja2.StrictUndefined)


def svg(picture: dict) -> str:
    """The drawing as a standalone SVG document (the same template the page includes)."""
    return _TEMPLATES.get_template("lineage_graph.svg").render(drawing=picture)
