#!/usr/bin/env python3
"""Writes N synthetic Microsoft 365 Unified Audit Log records as JSON lines (one compact object a
line, the Management Activity API's shape) for the rule-engine benchmarks.

    make_ual.py --records 1000000 --out /tmp/ual.jsonl [--seed 5580] [--storm-rate 0.002]

Mix: Exchange MailItemsAccessed (Bind with Folders/FolderItems, Sync with one folder), Send,
MoveToDeletedItems, SearchQueryInitiatedExchange; SharePoint/OneDrive FileAccessed, FilePreviewed,
FileModified; Azure AD UserLoggedIn / UserLoginFailed. Lines are about 600-900 bytes, never over
1024. A small share of records (--storm-rate) comes from the Storm-0558 IPs listed in
rules/data/storm-0558.yml (read from that file). Exchange mailbox records carry the IP in
ClientIPAddress, the other workloads in ClientIP, as the real log does. The same seed gives
the same file. A summary (operation counts, Storm-0558 lines, and how many lines the rule
"Operation is MailItemsAccessed or ClientIPAddress is a Storm-0558 IP" should match) goes to
stderr.
"""
import argparse
import collections
import datetime as dt
import json
import pathlib
import random
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
IOC_FILE = ROOT / "rules" / "data" / "storm-0558.yml"
MAX_LINE = 1024
ORG_ID = "7f3c2a10-5b8e-4d21-9c6a-2e8f0b7d4a11"
DOMAIN = "kscope.test"

# (AppId, ClientInfoString) pairs for mailbox access. The AppIds are public first-party app IDs as
# they appear in UAL samples; the strings are typical ClientInfoString values.
MAIL_CLIENTS = [
    ("00000002-0000-0ff1-ce00-000000000000", "Client=OWA;Action=ViaProxy", 30),
    ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "Client=MSExchangeRPC", 35),
    ("13937bba-652e-4c46-b222-3003f4d1ff97", "Client=REST;Client=RESTSystem;;", 15),
    ("27922004-5251-4030-b22d-91ecd9a37ea4", "Client=OutlookService;Outlook-iOS/2.0", 15),
    ("00000002-0000-0ff1-ce00-000000000000", "Client=ActiveSync", 5),
]
FOLDERS = ["\\Inbox", "\\Sent Items", "\\Drafts", "\\Archive", "\\Inbox\\Projects",
           "\\Inbox\\Finance", "\\Deleted Items", "\\Calendar", "\\Inbox\\Vendors"]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
    "OneDriveMpc-Transform_Thumbnail/1.0",
]
DOCS = ["Q3-budget.xlsx", "roadmap.pptx", "contract-draft.docx", "minutes.docx", "invoice-0042.pdf",
        "architecture.vsdx", "travel-policy.pdf", "security-review.docx", "forecast.xlsx"]
SUBJECTS = ["Re: quarterly report", "Budget follow-up", "Meeting notes", "Invoice attached",
            "Travel plans", "Contract review", "Security notice", "Fwd: roadmap draft"]


def load_storm_ips(path):
    """The storm0558_ips list of the indicator file (PyYAML if present, else a line scan)."""
    text = path.read_text(encoding="utf-8")
    try:
        import yaml  # type: ignore
        ips = yaml.safe_load(text)["placeholders"]["storm0558_ips"]
    except ImportError:
        block = text.split("storm0558_ips:", 1)[1].split("storm0558_user_agents:", 1)[0]
        ips = re.findall(r"^\s*-\s*([0-9]+(?:\.[0-9]+){3})\b", block, re.M)
    if not ips:
        sys.exit(f"no storm0558_ips in {path}")
    return [str(ip) for ip in ips]


class Gen:
    def __init__(self, seed, storm_ips, storm_rate, users=2000):
        self.rng = random.Random(seed)
        self.storm_ips, self.storm_rate = storm_ips, storm_rate
        r = self.rng
        self.users = [f"user{i:04d}@{DOMAIN}" for i in range(users)]
        self.user_ip = [f"{r.choice([81, 86, 92, 109, 176, 203])}.{r.randrange(256)}."
                        f"{r.randrange(256)}.{r.randrange(1, 255)}" for _ in range(users)]
        self.user_mbx = [self.uuid() for _ in range(users)]
        self.user_oid = [self.uuid() for _ in range(users)]
        self.user_puid = [f"{r.getrandbits(64):016X}" for _ in range(users)]
        self.client_w = [w for _, _, w in MAIL_CLIENTS]
        self.t = dt.datetime(2023, 6, 1, 0, 0, 0)

    def uuid(self):
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def folder_id(self):
        return f"LgAAAAA{self.rng.getrandbits(96):024x}AAAB"

    def msgid(self):
        r = self.rng
        return f"<{r.getrandbits(64):016X}@PH0PR11MB{r.randrange(1000, 9999)}.namprd11.prod.outlook.com>"

    def base(self, op, rtype, workload, u, ip, status="Succeeded"):
        self.t += dt.timedelta(milliseconds=self.rng.randrange(1, 400))
        return {"CreationTime": self.t.strftime("%Y-%m-%dT%H:%M:%S"), "Id": self.uuid(),
                "Operation": op, "OrganizationId": ORG_ID, "RecordType": rtype,
                "ResultStatus": status, "UserKey": self.user_puid[u], "UserType": 0, "Version": 1,
                "Workload": workload, "ClientIP": ip, "UserId": self.users[u]}

    def exchange(self, op, rtype, u, ip, owner=None):
        owner = u if owner is None else owner
        app, info, _ = self.rng.choices(MAIL_CLIENTS, self.client_w)[0]
        rec = self.base(op, rtype, "Exchange", u, ip)
        del rec["ClientIP"]  # Exchange mailbox records carry ClientIPAddress instead
        rec.update({"AppId": app, "ClientAppId": app, "ClientIPAddress": ip,
                    "ClientInfoString": info,
                    "LogonType": 0 if owner == u else 1, "MailboxGuid": self.user_mbx[owner],
                    "MailboxOwnerUPN": self.users[owner]})
        return rec

    def mail_items_accessed(self, u, ip):
        r = self.rng
        owner = u if r.random() < 0.93 else r.randrange(len(self.users))
        rec = self.exchange("MailItemsAccessed", 50, u, ip, owner)
        if r.random() < 0.8:
            access, n_folders = "Bind", r.choice([1] * 9 + [2])
            folders = [{"FolderItems": [{"InternetMessageId": self.msgid()}
                                        for _ in range(r.choice([1, 1, 1, 2]))],
                        "Id": self.folder_id(), "Path": r.choice(FOLDERS)}
                       for _ in range(n_folders)]
            count = sum(len(f["FolderItems"]) for f in folders)
        else:
            access, count = "Sync", r.randrange(1, 300)
            folders = [{"Id": self.folder_id(), "Path": r.choice(FOLDERS)}]
        rec["OperationProperties"] = [{"Name": "MailAccessType", "Value": access}]
        rec["Folders"] = folders
        rec["OperationCount"] = count
        return rec

    def exchange_item(self, op, u, ip):
        r = self.rng
        rec = self.exchange(op, 2, u, ip)
        if op == "SearchQueryInitiatedExchange":
            rec["RecordType"] = 101
            rec["QueryText"] = r.choice(["invoice", "password", "budget 2023", "from:ceo", "wire"])
        else:
            rec["Item"] = {"Id": f"RgAAAAA{r.getrandbits(96):024x}AAAJ", "InternetMessageId": self.msgid(),
                           "ParentFolder": {"Path": r.choice(FOLDERS)}, "SizeInBytes": r.randrange(2000, 90000),
                           "Subject": r.choice(SUBJECTS)}
        return rec

    def sharepoint(self, op, u, ip):
        r = self.rng
        name = self.users[u].split("@")[0]
        doc = r.choice(DOCS)
        onedrive = r.random() < 0.5
        site = (f"https://bench-my.sharepoint.com/personal/{name}_{DOMAIN.replace('.', '_')}/"
                if onedrive else f"https://bench.sharepoint.com/sites/team{r.randrange(40)}/")
        rel = "Documents" if onedrive else "Shared Documents/General"
        rec = self.base(op, 6, "OneDrive" if onedrive else "SharePoint", u, ip)
        rec.update({"ObjectId": f"{site}{rel}/{doc}", "CorrelationId": self.uuid(),
                    "EventSource": "SharePoint", "ItemType": "File", "ListId": self.uuid(),
                    "UserAgent": r.choice(USER_AGENTS),
                    "SourceFileExtension": doc.rsplit(".", 1)[1], "SiteUrl": site,
                    "SourceFileName": doc, "SourceRelativeUrl": rel})
        return rec

    def login(self, op, u, ip):
        r = self.rng
        ok = op == "UserLoggedIn"
        rec = self.base(op, 15, "AzureActiveDirectory", u, ip, "Success" if ok else "Failed")
        rec.update({"AzureActiveDirectoryEventType": 1,
                    "ExtendedProperties": [{"Name": "ResultStatusDetail", "Value": "Success" if ok else "Redirect"},
                                           {"Name": "UserAgent", "Value": r.choice(USER_AGENTS[:3])}],
                    "ModifiedProperties": [], "Actor": [{"ID": self.user_oid[u], "Type": 0},
                                                        {"ID": self.users[u], "Type": 5}],
                    "ActorIpAddress": ip,
                    "Target": [{"ID": self.uuid(), "Type": 0}], "ApplicationId": r.choice(MAIL_CLIENTS)[0],
                    "ErrorNumber": "0" if ok else r.choice(["50126", "50053", "50076"])})
        return rec

    OPS = [("MailItemsAccessed", 34), ("FileAccessed", 18), ("UserLoggedIn", 14), ("Send", 7),
           ("FilePreviewed", 7), ("FileModified", 5), ("UserLoginFailed", 4),
           ("MoveToDeletedItems", 6), ("SearchQueryInitiatedExchange", 5)]
    STORM_OPS = [("MailItemsAccessed", 60), ("SearchQueryInitiatedExchange", 10), ("Send", 5),
                 ("UserLoggedIn", 15), ("FileAccessed", 10)]

    def record(self):
        r = self.rng
        u = r.randrange(len(self.users))
        storm = r.random() < self.storm_rate
        table = self.STORM_OPS if storm else self.OPS
        op = r.choices([o for o, _ in table], [w for _, w in table])[0]
        ip = r.choice(self.storm_ips) if storm else self.user_ip[u]
        if op == "MailItemsAccessed":
            rec = self.mail_items_accessed(u, ip)
        elif op in ("Send", "MoveToDeletedItems", "SearchQueryInitiatedExchange"):
            rec = self.exchange_item(op, u, ip)
        elif op.startswith("File"):
            rec = self.sharepoint(op, u, ip)
        else:
            rec = self.login(op, u, ip)
        return rec, storm


def encode(rec):
    line = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
    while len(line.encode()) > MAX_LINE and rec.get("Folders"):  # trim the biggest Bind records
        f = rec["Folders"]
        if len(f) > 1:
            f.pop()
        elif len(f[0].get("FolderItems", [])) > 1:
            f[0]["FolderItems"].pop()
        else:
            break
        if "FolderItems" in f[0]:
            rec["OperationCount"] = sum(len(x["FolderItems"]) for x in f)
        line = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
    assert len(line.encode()) <= MAX_LINE, line
    return line


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=5580)
    ap.add_argument("--storm-rate", type=float, default=0.002,
                    help="share of records from a Storm-0558 IP (default 0.002)")
    ap.add_argument("--iocs", default=str(IOC_FILE), help="indicator file (storm0558_ips)")
    a = ap.parse_args()
    storm_ips = load_storm_ips(pathlib.Path(a.iocs))
    storm_set = set(storm_ips)
    g = Gen(a.seed, storm_ips, a.storm_rate)
    ops, storm_lines, expected, size, longest = collections.Counter(), 0, 0, 0, 0
    with open(a.out, "w", encoding="utf-8", newline="\n") as f:
        for _ in range(a.records):
            rec, storm = g.record()
            line = encode(rec)
            f.write(line + "\n")
            ops[rec["Operation"]] += 1
            storm_lines += storm
            expected += rec["Operation"] == "MailItemsAccessed" or rec.get("ClientIPAddress") in storm_set
            n = len(line.encode()) + 1
            size, longest = size + n, max(longest, n)
    print(f"wrote {a.records} records to {a.out}: {size} bytes, mean {size / max(a.records, 1):.0f} B/line, "
          f"max {longest} B; {storm_lines} from Storm-0558 IPs; "
          f"expected matches of competitor-rule.yml: {expected}", file=sys.stderr)
    print("operations: " + ", ".join(f"{k}={v}" for k, v in ops.most_common()), file=sys.stderr)


if __name__ == "__main__":
    main()
