#!/usr/bin/env python3
"""scrape.py - fetches guardd's /metrics and checks the pipeline's series.

  scrape.py PORT MIN_CONSUMED MIN_DLQ

Exits 1 unless guardd_events_consumed_total >= MIN_CONSUMED, the DLQ counter
sums to >= MIN_DLQ, verdicts, batch sizes, end-to-end latency and queue wait
have observations, and guardd_ready is 1. Prints the figures it read.
"""
import sys
import urllib.request


def series(text, name):
    """Sum of the samples of metric `name` (any labels)."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head = line.split(" ", 1)[0]
        if head == name or head.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def main():
    port, min_consumed, min_dlq = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    got = {n: series(text, n) for n in (
        "guardd_events_consumed_total", "guardd_dlq_records_total", "guardd_verdicts_total",
        "guardd_batch_size_count", "guardd_end_to_end_seconds_count",
        "guardd_queue_wait_seconds_count", "guardd_ready", "guardd_tokens_total")}
    print(got)
    ok = (got["guardd_events_consumed_total"] or 0) >= min_consumed \
        and (got["guardd_dlq_records_total"] or 0) >= min_dlq \
        and (got["guardd_verdicts_total"] or 0) > 0 \
        and (got["guardd_batch_size_count"] or 0) > 0 \
        and (got["guardd_end_to_end_seconds_count"] or 0) > 0 \
        and (got["guardd_queue_wait_seconds_count"] or 0) > 0 \
        and (got["guardd_tokens_total"] or 0) > 0 \
        and got["guardd_ready"] == 1
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
