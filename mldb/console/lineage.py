"""The lineage page: where a model's data came from and what was written with its predictions, as a graph.

Nodes are relations by name (``customers``), model versions as ``model@version`` (``churn@2``) and
embedding models by name; edges are ``mldb.lineage``'s rows (``training``: a table or view -> a
model version; ``prediction`` / ``embedding``: a model -> the table written with its outputs; a
base table reached through a view carries the view in ``via``), one per distinct edge, plus
``view`` edges from the tables a view reads to the view (parsed from the view's SQL with mldb's
own ``tables_read``, or from ``via`` for a view since dropped). ``?node=X`` keeps what is upstream
(``direction=up``), downstream (``down``) or both of X, to ``depth`` edges; a model's name stands
for all its versions (``model@*`` always does: a table may have the model's name). The graph is
bounded (``MAX_NODES``, the nodes nearest the focus, then the most recently active) and drawn by
``mldb.console.graph`` as inline SVG.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

import networkx as nx

from mldb.console import graph
from mldb.console.pages import BadRequest, NotFound, chart, page
from mldb.lifecycle.lineage import tables_read

MAX_NODES = 300  # drawn and listed; beyond that the page says "showing N of M"
MAX_EDGES = 20_000  # distinct edges read from mldb.lineage (the newest)
MAX_TABLE_ROWS = 500  # edges listed under the graph
DIRECTIONS = {"both": "upstream and downstream", "up": "upstream", "down": "downstream"}

# one row per distinct edge: a table written by 1000 INSERTs is one edge, with its last statement
_EDGES_SQL = """
SELECT source, source_version, target, target_version, kind, via,
       arg_max(statement, created_at) AS statement, max(created_at) AS created_at, count(*) AS times
FROM mldb.lineage
GROUP BY source, source_version, target, target_version, kind, via
ORDER BY max(created_at) DESC NULLS LAST, source, source_version, target, target_version, kind, via
LIMIT ?"""

_RELATIONS_SQL = """
SELECT lower(CASE WHEN schema_name = 'main' THEN table_name ELSE schema_name || '.' || table_name END) AS name,
       'table' AS kind, NULL AS sql
FROM duckdb_tables() WHERE database_name = current_database() AND schema_name <> 'mldb' AND NOT internal
UNION ALL
SELECT lower(CASE WHEN schema_name = 'main' THEN view_name ELSE schema_name || '.' || view_name END), 'view', sql
FROM duckdb_views() WHERE database_name = current_database() AND schema_name <> 'mldb' AND NOT internal"""

@page("/lineage", "lineage.html", query=("node", "direction", "depth"),
      html_only=("directions", "table_rows", "drawing"))
def lineage(reader, node: str | None = None, direction: str | None = None, depth: str | None = None) -> dict:
    """The whole graph, or the part of it upstream / downstream of ``node``."""
    direction, depth = _direction(direction), _depth(depth)
    whole = Lineage.read(reader)
    if node is None:
        return whole.shown(distance={name: 0 for name in whole.nodes}, focus=None)
    ids = whole.resolve(node)
    focus = {"node": node, "ids": sorted(ids), "direction": direction, "depth": depth}
    return whole.shown(whole.reach(ids, direction, depth), focus)


@chart("/charts/lineage.svg")
def lineage_chart(reader) -> str:
    return graph.svg(lineage(reader)["drawing"])


@chart("/charts/lineage/{node:path}.svg")
def node_chart(reader, node: str) -> str:
    """The graph around one node (both directions), e.g. ``/charts/lineage/churn.svg`` for a model page."""
    return graph.svg(lineage(reader, node=node)["drawing"])


def _direction(direction: str | None) -> str:
    direction = direction or "both"
    if direction not in DIRECTIONS:
        raise BadRequest(f"direction must be up, down or both, not {direction!r}")
    return direction


def _depth(depth: str | None) -> int | None:
    if depth is None:
        return None
    try:
        value = int(depth)
    except ValueError:
        value = 0
    if value < 1:
        raise BadRequest(f"depth must be a whole number of edges, 1 or more, not {depth!r}")
    return value


@dataclasses.dataclass
class Lineage:
    """The whole graph: nodes by id, edges in the order they were recorded (views first)."""
    nodes: dict[str, dict]
    edges: list[dict]
    catalog: Catalog
    truncated: bool  # more distinct edges than MAX_EDGES

    @classmethod
    def read(cls, reader) -> Lineage:
        catalog = Catalog.read(reader)
        rows = reader.rows(_EDGES_SQL, [MAX_EDGES]) if reader.has_table("lineage") else []
        rows.reverse()  # oldest first: a cycle is broken at its newest edge
        self = cls({}, [], catalog, len(rows) == MAX_EDGES)
        outputs = {row["target"] for row in rows if row["kind"] in ("prediction", "embedding")}
        views = {row["via"] for row in rows if row["via"]}
        for row in rows:
            source = self._add(row["source"], row["source_version"], row["kind"] == "training", outputs, views)
            target = self._add(row["target"], row["target_version"], row["kind"] != "training", outputs, views)
            self.edges.append(_edge(source, target, row))
        self.edges[:0] = self._view_edges(rows, outputs)
        return self

    def _add(self, name: str, version: int | None, relation: bool, outputs: set[str], views: set[str]) -> str:
        """The node of one end of an edge: a relation (the data side), else a model (version)."""
        if (node_id := name if version is None else f"{name}@{version}") in self.nodes:
            return node_id
        if version is None and relation:
            node = self.catalog.relation(name, output=name in outputs, view=name in views)
        elif version is None and name not in self.catalog.models:
            node = _node(name, "embedding_model", None, exists=True, subtitle="embedding model")
        else:
            node = self.catalog.model_version(name, version)
        return self.nodes.setdefault(node["id"], node)["id"]

    def _view_edges(self, rows: list[dict], outputs: set[str]) -> list[dict]:
        """Tables (and views) -> each view in the graph: from the view's SQL, else (dropped) from ``via``."""
        edges, seen = [], set()
        pending = sorted(name for name in self.nodes if self.catalog.is_view(name))
        pending += sorted({row["via"] for row in rows if row["via"] and not self.catalog.is_view(row["via"])})
        while pending:
            view = pending.pop(0)
            if view in seen:
                continue
            seen.add(view)
            self.nodes.setdefault(view, self.catalog.relation(view, output=view in outputs, view=True))
            for table in self._read_by(view, rows):
                self.nodes.setdefault(table, self.catalog.relation(table, output=table in outputs))
                edges.append({"source": table, "target": view, "kind": "view", "via": None, "statement": None,
                              "created_at": None, "times": 0, "drawn": True})
                if self.catalog.is_view(table):
                    pending.append(table)
        return edges

    def _read_by(self, view: str, rows: list[dict]) -> list[str]:
        if self.catalog.is_view(view):
            return [name for name in tables_read(self.catalog.views[view])
                    if name != view and name in self.catalog.relations]
        return sorted({row["source"] for row in rows if row["via"] == view})

    def resolve(self, name: str) -> set[str]:
        """The node ids ``name`` stands for: a node, a relation, ``model@version``, or a model's versions
        (``model@*`` always means the model's versions: a table may have the model's name)."""
        if name.endswith("@*"):
            return self._versions_of(name[:-2])
        for candidate in (name, name.lower()):
            if candidate in self.nodes:
                return {candidate}
        if name.lower() in self.catalog.relations:
            return {self._isolated(self.catalog.relation(name.lower(), output=False))}
        model, _, version = name.rpartition("@")
        if version.isdigit() and (model, int(version)) in self.catalog.versions:
            return {self._isolated(self.catalog.model_version(model, int(version)))}
        return self._versions_of(name)

    def _versions_of(self, model: str) -> set[str]:
        versions = sorted(v for m, v in self.catalog.versions if m == model)
        ids = {node_id for node_id, node in self.nodes.items()
               if node["kind"] == "model_version" and node["name"] == model}
        ids |= {self._isolated(self.catalog.model_version(model, v)) for v in versions}
        if not ids:
            raise NotFound(f"no table, view or model named {model!r} (nor a version 'model@n')")
        return ids

    def _isolated(self, node: dict) -> str:
        return self.nodes.setdefault(node["id"], node)["id"]

    def reach(self, ids: set[str], direction: str, depth: int | None) -> dict[str, int]:
        """``{node: edges away}`` for the nodes upstream / downstream of ``ids`` within ``depth``."""
        digraph = nx.DiGraph()
        digraph.add_nodes_from(self.nodes)
        digraph.add_edges_from((edge["source"], edge["target"]) for edge in self.edges)
        found = {node: 0 for node in ids}
        upstream, downstream = digraph.reverse(copy=False), digraph
        walks = {"up": [upstream], "down": [downstream], "both": [upstream, downstream]}[direction]
        for walked in walks:
            for distance, layer in enumerate(nx.bfs_layers(walked, sorted(ids))):
                if depth is not None and distance > depth:
                    break
                for node in layer:
                    found[node] = min(found.get(node, distance), distance)
        return found

    def shown(self, distance: dict[str, int], focus: dict | None) -> dict:
        """The page's data: the nearest ``MAX_NODES`` nodes of ``distance``, their edges, their drawing."""
        activity = self._activity()
        ranked = sorted(distance, key=lambda node: (distance[node], -activity.get(node, 0), node))
        kept = set(ranked[:MAX_NODES])
        nodes = [self.nodes[node] for node in sorted(kept)]
        edges = [edge for edge in self.edges if edge["source"] in kept and edge["target"] in kept]
        drawn = [edge for edge in edges if edge["drawn"]]
        picture = graph.drawing(nodes, drawn, focus=set(focus["ids"]) if focus else set())
        return {"nodes": nodes, "edges": edges, "focus": focus, "total_nodes": len(distance),
                "shown_nodes": len(nodes), "note": self._note(len(distance), len(nodes), focus),
                "directions": DIRECTIONS, "table_rows": MAX_TABLE_ROWS, "drawing": picture}

    def _activity(self) -> dict[str, float]:
        last: dict[str, float] = {}
        for edge in self.edges:
            when = edge["created_at"].timestamp() if edge["created_at"] else 0
            for node in (edge["source"], edge["target"]):
                last[node] = max(last.get(node, 0), when)
        return last

    def _note(self, total: int, shown: int, focus: dict | None) -> str | None:
        notes = []
        if shown < total:
            which = f"nearest {focus['node']}" if focus else "most recently active"
            notes.append(f"showing {shown} of {total} nodes (the {which}); pick a node to see its part of the graph")
        if self.truncated:
            notes.append(f"only the {MAX_EDGES:,} most recent distinct edges of mldb.lineage are read")
        return "; ".join(notes) or None


@dataclasses.dataclass
class Catalog:
    """What the graph needs to know of the catalog: relations now, models, their versions."""
    relations: dict[str, str]  # lower-cased name -> 'table' or 'view'
    views: dict[str, str]  # view name -> its SQL
    models: dict[str, dict]  # name -> deployed_version, shadow_version
    versions: set[tuple[str, int]]

    @classmethod
    def read(cls, reader) -> Catalog:
        relations, views = {}, {}
        for row in reader.rows(_RELATIONS_SQL):
            relations.setdefault(row["name"], row["kind"])
            if row["kind"] == "view":
                views.setdefault(row["name"], row["sql"])
        models, versions = {}, set()
        if reader.has_table("models"):  # (with model_versions: the same feature's tables)
            shadow = "shadow_version" if reader.has_column("models", "shadow_version") \
                else "NULL::INTEGER AS shadow_version"  # (a file from before shadows)
            models = {row.pop("name"): row for row in reader.rows(
                f"SELECT name, deployed_version, {shadow} FROM mldb.models")}
            versions = {(row["model"], row["version"]) for row in reader.rows(
                "SELECT model, version FROM mldb.model_versions")}
        return cls(relations, views, models, versions)

    def is_view(self, name: str) -> bool:
        return self.relations.get(name) == "view"

    def relation(self, name: str, output: bool, view: bool = False) -> dict:
        """A table or view node (``output``: written with a model's predictions)."""
        relation = self.relations.get(name) or ("view" if view else "table")
        exists = name in self.relations
        subtitle = f"{relation} written by a model" if output else relation
        href = "/tables/" + quote(name, safe="") if exists else None
        return _node(name, "output" if output else relation, href, exists=exists,
                     subtitle=subtitle if exists else f"{subtitle} · dropped", relation=relation)

    def model_version(self, name: str, version: int | None) -> dict:
        model = self.models.get(name, {})
        deployed = version is not None and model.get("deployed_version") == version
        shadow = version is not None and model.get("shadow_version") == version
        status = " · deployed" if deployed else " · shadow" if shadow else ""
        exists = (name, version) in self.versions if version is not None else name in self.models
        node = _node(name if version is None else f"{name}@{version}", "model_version",
                     "/models/" + quote(name, safe="") if name in self.models else None, exists=exists,
                     subtitle=(f"model version {version}" if version is not None else "model") + status)
        return {**node, "name": name, "version": version, "deployed": deployed, "shadow": shadow}


def _node(node_id: str, kind: str, href: str | None, exists: bool, subtitle: str, relation: str | None = None) -> dict:
    return {"id": node_id, "label": node_id, "kind": kind, "href": href, "name": node_id, "version": None,
            "relation": relation, "exists": exists, "deployed": False, "shadow": False, "subtitle": subtitle}


def _edge(source: str, target: str, row: dict) -> dict:
    return {"source": source, "target": target, "kind": row["kind"], "via": row["via"], "statement": row["statement"],
            "created_at": row["created_at"], "times": row["times"], "drawn": row["via"] is None}
