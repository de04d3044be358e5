#!/usr/bin/env python3
"""Lists Palermo's failed jobs through the dashboard's JSON API (GET /api/failed).

    python3 list_failures.py                                   # http://127.0.0.1:9090
    python3 list_failures.py --url http://127.0.0.1:3000/palermo --queue mail --all

Nothing but Palermo's recorder consumes `palermo.failed`; other languages read failures
from the dashboard (`palermo web`, or the router mounted in an app), which reads the store
the recorder fills. Only the standard library is needed.
"""
import argparse
import base64
import json
import os
import sys
import unicodedata
import urllib.error
import urllib.parse
import urllib.request


def printable(text):
    """Job names, errors and arguments come from messages: never let them drive the terminal."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    return "".join(out)


def get(url, auth):
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def failures(base, filters, limit, every, auth):
    """Yields failures, newest first, following the `older` cursor when `every` is set."""
    query = dict(filters, limit=str(limit))
    while True:
        page = get(f"{base}/api/failed?{urllib.parse.urlencode(query)}", auth)
        yield page["total"], page["failures"]
        if not every or not page.get("older"):
            return
        query["after"] = page["older"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PALERMO_WEB_URL", "http://127.0.0.1:9090"),
                        help="the dashboard's base URL (defaults to PALERMO_WEB_URL or http://127.0.0.1:9090)")
    parser.add_argument("--queue", help="only this queue")
    parser.add_argument("--job", help="only this job name")
    parser.add_argument("--since", help="only failures newer than this, e.g. 1h")
    parser.add_argument("--limit", type=int, default=25, help="failures per page, 1-1000 (defaults to 25)")
    parser.add_argument("--all", action="store_true", help="follow the pages to the oldest failure")
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    opts = parser.parse_args()
    auth = os.environ.get("PALERMO_WEB_AUTH")  # user:password when the dashboard has a login
    filters = {k: v for k, v in (("queue", opts.queue), ("job", opts.job), ("since", opts.since)) if v}
    try:
        shown = 0
        for total, page in failures(opts.url.rstrip("/"), filters, opts.limit, opts.all, auth):
            for f in page:
                shown += 1
                if opts.json:
                    print(json.dumps(f))
                else:
                    print(printable(f"{f['id']}  {f['failed_at']}  {f['queue']}  {f['job_name']}  "
                                    f"{f['error_kind']}  attempt {f['attempt']}  {f['error'][:100]}"))
        if not opts.json:
            print(f"{shown} shown of {total} open failures")
    except urllib.error.HTTPError as e:
        print(f"error: {opts.url}: HTTP {e.code}: {printable(e.read().decode(errors='replace'))[:300]}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError, KeyError) as e:
        print(f"error: {opts.url}: {printable(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
