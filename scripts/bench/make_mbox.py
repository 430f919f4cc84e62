#!/usr/bin/env python3
"""Writes a synthetic mbox of N plain-text messages (distinct senders, subjects, threads and
dates) for the mail benchmarks: make_mbox.py N OUT."""
import random
import sys

count, out = int(sys.argv[1]), sys.argv[2]
rng = random.Random(8621)
words = ("quarterly report budget meeting storm key rotation audit incident review plan "
         "draft contract invoice travel lunch release roadmap security notice").split()
with open(out, "w", newline="") as f:
    for i in range(count):
        sender = f"user{rng.randrange(500)}@example{rng.randrange(20)}.test"
        subject = " ".join(rng.choice(words) for _ in range(4)).capitalize()
        thread = rng.randrange(count // 3 + 1)
        day, second = 1 + i * 28 // count, i % 86400
        reply = f"In-Reply-To: <t{thread}@bench.test>\n" if i % 3 else ""
        body = "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(8))
        f.write(f"From {sender} Mon Oct  2 10:00:00 2023\n"
                f"From: {sender}\nTo: alice@bench.keyscope.test\nSubject: {subject} {i}\n"
                f"Message-ID: <m{i}@bench.test>\n{reply}"
                f"Date: {day:02d} Oct 2023 {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d} +0000\n"
                f"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n\n")
