"""Runs SQL steps on chdb (in-process ClickHouse) for the sink's tests.

Usage: exec.py SESSION_DIR, then one JSON step per line on stdin:
{"sql": str, "params": {name: str}?, "format": str?}. For each step it
prints one line, {"ok": true, "output": str} or {"ok": false, "error": str},
and flushes, so a test can drive it step by step. It exits at end of input.
The session directory keeps the databases between runs, like a server's
data directory. Data is loaded by the SQL itself (INSERT ... FROM INFILE
... FORMAT ...), so bytes reach the engine unchanged.
"""
import json
import sys

from chdb import session


def main():
    s = session.Session(sys.argv[1])
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            step = json.loads(line)
            try:
                r = s.query(step["sql"], step.get("format") or "TSV", params=step.get("params") or None)
                res = {"ok": True, "output": r.bytes().decode("utf-8", "replace") if r is not None else ""}
            except Exception as e:  # chdb raises its own error types
                res = {"ok": False, "error": str(e)}
            print(json.dumps(res), flush=True)
    finally:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
