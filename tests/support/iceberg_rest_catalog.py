"""A small Iceberg REST catalog server on top of pyiceberg's SqlCatalog, for the tests.

usage: iceberg_rest_catalog.py WAREHOUSE_DIR CLIENT_ID CLIENT_SECRET STATIC_TOKEN

Serves the REST catalog API (the endpoints of the Iceberg REST specification that iceberg-rust's
and pyiceberg's REST clients use) on 127.0.0.1 at a port the system picks, and prints
`port=<N>` on its first line of standard output once it listens. The catalog's state is a
pyiceberg SqlCatalog in WAREHOUSE_DIR/rest-catalog.db, its tables under WAREHOUSE_DIR.

- `GET /v1/config`, namespaces (list, create, load, HEAD, delete), tables (list, create, load,
  HEAD, delete), and `POST /v1/namespaces/{ns}/tables/{t}`: a commit. Its requirements
  (`assert-table-uuid`, `assert-ref-snapshot-id`, ...) are checked by pyiceberg against the
  table's current metadata, and the metadata pointer is swapped with a compare-and-swap in
  SQLite; a failed requirement answers 409 with a `CommitFailedException`, as the
  specification says.
- `POST /v1/oauth/tokens`: the OAuth2 client-credentials grant; CLIENT_ID:CLIENT_SECRET gets a
  fresh bearer token, anything else 401 `invalid_client`.
- Every other `/v1` request needs `Authorization: Bearer <token>` with an issued token or
  STATIC_TOKEN, else 401 `NotAuthorizedException`.
- Test hooks (no authentication, not part of the API): `GET /test/stats` answers
  `{"commits": n, "conflicts": n, "unauthorized": n, "tokens_issued": n}`; `POST /test/interfere`
  with `{"table": "ns.t", "rows": [{...}], "summary": {...}}` arms a commit of those rows by
  another writer, made just before the next commit request to that table is checked.
"""
import json
import secrets
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import CommitTableRequest

WAREHOUSE, CLIENT_ID, CLIENT_SECRET, STATIC_TOKEN = sys.argv[1:5]
CATALOG = SqlCatalog("rest", uri=f"sqlite:///{WAREHOUSE}/rest-catalog.db", warehouse=f"file://{WAREHOUSE}")
LOCK = threading.Lock()
TOKENS = {STATIC_TOKEN}
STATS = {"commits": 0, "conflicts": 0, "unauthorized": 0, "tokens_issued": 0}
INTERFERE = {}


class ApiError(Exception):
    def __init__(self, code, kind, message):
        super().__init__(message)
        self.code, self.kind, self.message = code, kind, message


def namespace(segment):
    return tuple(urllib.parse.unquote(segment).split("\x1f"))


def table_result(table):
    return {
        "metadata-location": table.metadata_location,
        "metadata": json.loads(table.metadata.model_dump_json()),
        "config": {},
    }


def partition_spec(raw, schema):
    if not raw or not raw.get("fields"):
        return PartitionSpec()
    fields = []
    for i, f in enumerate(raw["fields"]):
        fields.append(PartitionField(source_id=f["source-id"], field_id=f.get("field-id", 1000 + i),
                                     transform=f["transform"], name=f["name"]))
    return PartitionSpec(*fields)


def interfere(ident):
    """Commits the armed rows of another writer to `ident`, once."""
    armed = INTERFERE.pop(ident, None)
    if armed is None:
        return
    table = CATALOG.load_table(ident)
    arrow_schema = table.schema().as_arrow()
    batch = pa.Table.from_pylist(armed["rows"], schema=arrow_schema)
    table.append(batch, snapshot_properties=armed.get("summary", {}))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))

    def answer(self, code, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def body(self):
        return self._raw

    def json_body(self):
        raw = self.body()
        return json.loads(raw) if raw else {}

    def authorized(self):
        auth = self.headers.get("Authorization") or ""
        return auth.startswith("Bearer ") and auth[len("Bearer "):] in TOKENS

    def handle_any(self):
        # Read the whole body first, so a refused request leaves the connection usable.
        n = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(n) if n else b""
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        try:
            if parts[:1] == ["test"]:
                return self.test_hook(parts[1:])
            if parts[:1] != ["v1"]:
                raise ApiError(404, "NotFoundException", f"no route {url.path}")
            parts = parts[1:]
            if parts == ["oauth", "tokens"] and self.command == "POST":
                return self.token()
            if not self.authorized():
                STATS["unauthorized"] += 1
                raise ApiError(401, "NotAuthorizedException", "missing or invalid bearer token")
            with LOCK:
                return self.route(parts, urllib.parse.parse_qs(url.query))
        except ApiError as e:
            self.answer(e.code, {"error": {"message": e.message, "type": e.kind, "code": e.code}})
        except (NoSuchTableError, NoSuchNamespaceError) as e:
            kind = "NoSuchTableException" if isinstance(e, NoSuchTableError) else "NoSuchNamespaceException"
            self.answer(404, {"error": {"message": str(e), "type": kind, "code": 404}})
        except (TableAlreadyExistsError, NamespaceAlreadyExistsError) as e:
            self.answer(409, {"error": {"message": str(e), "type": "AlreadyExistsException", "code": 409}})
        except CommitFailedException as e:
            STATS["conflicts"] += 1
            self.answer(409, {"error": {"message": str(e), "type": "CommitFailedException", "code": 409}})

    def token(self):
        form = urllib.parse.parse_qs(self.body().decode())
        one = lambda k: (form.get(k) or [""])[0]
        if one("grant_type") != "client_credentials" or (one("client_id"), one("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            STATS["unauthorized"] += 1
            return self.answer(401, {"error": "invalid_client", "error_description": "unknown client credentials"})
        token = secrets.token_hex(16)
        TOKENS.add(token)
        STATS["tokens_issued"] += 1
        self.answer(200, {"access_token": token, "token_type": "bearer", "expires_in": 3600,
                          "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})

    def route(self, parts, query):
        m = self.command
        if parts == ["config"] and m == "GET":
            return self.answer(200, {"defaults": {}, "overrides": {}})
        if parts == ["namespaces"]:
            if m == "GET":
                parent = namespace(query["parent"][0]) if "parent" in query else ()
                return self.answer(200, {"namespaces": [list(n) for n in CATALOG.list_namespaces(parent)]})
            if m == "POST":
                body = self.json_body()
                CATALOG.create_namespace(tuple(body["namespace"]), body.get("properties") or {})
                return self.answer(200, {"namespace": body["namespace"], "properties": body.get("properties") or {}})
        if len(parts) == 2 and parts[0] == "namespaces":
            ns = namespace(parts[1])
            if m in ("GET", "HEAD"):
                props = CATALOG.load_namespace_properties(ns)
                return self.answer(204) if m == "HEAD" else self.answer(200, {"namespace": list(ns), "properties": props})
            if m == "DELETE":
                CATALOG.drop_namespace(ns)
                return self.answer(204)
        if len(parts) == 3 and parts[0] == "namespaces" and parts[2] == "tables":
            ns = namespace(parts[1])
            if m == "GET":
                return self.answer(200, {"identifiers": [{"namespace": list(t[:-1]), "name": t[-1]}
                                                         for t in CATALOG.list_tables(ns)]})
            if m == "POST":
                body = self.json_body()
                schema = Schema.model_validate(body["schema"])
                table = CATALOG.create_table(ns + (body["name"],), schema=schema, location=body.get("location"),
                                             partition_spec=partition_spec(body.get("partition-spec"), schema),
                                             properties=body.get("properties") or {})
                return self.answer(200, table_result(table))
        if len(parts) == 4 and parts[0] == "namespaces" and parts[2] == "tables":
            ident = namespace(parts[1]) + (urllib.parse.unquote(parts[3]),)
            if m in ("GET", "HEAD"):
                table = CATALOG.load_table(ident)
                return self.answer(204) if m == "HEAD" else self.answer(200, table_result(table))
            if m == "DELETE":
                CATALOG.drop_table(ident)
                return self.answer(204)
            if m == "POST":
                request = CommitTableRequest.model_validate(
                    {"identifier": {"namespace": list(ident[:-1]), "name": ident[-1]}, **self.json_body()})
                interfere(".".join(ident))
                table = CATALOG.load_table(ident)
                response = CATALOG.commit_table(table, request.requirements, request.updates)
                STATS["commits"] += 1
                return self.answer(200, {"metadata-location": response.metadata_location,
                                         "metadata": json.loads(response.metadata.model_dump_json())})
        raise ApiError(404, "NotFoundException", f"no route {m} /v1/{'/'.join(parts)}")

    def test_hook(self, parts):
        if parts == ["stats"]:
            return self.answer(200, STATS)
        if parts == ["interfere"] and self.command == "POST":
            body = self.json_body()
            INTERFERE[body["table"]] = body
            return self.answer(200, {})
        raise ApiError(404, "NotFoundException", "no such test hook")

    do_GET = do_POST = do_HEAD = do_DELETE = handle_any


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"port={server.server_address[1]}", flush=True)
    server.serve_forever()


main()
