"""Migration files: naming, statement splitting, and the rules every table keeps."""

from __future__ import annotations

import re

from services.common import limits
from services.dbagent import migrations


def test_versions_are_numbered_in_order_without_gaps():
    versions = [v for v, _ in migrations.available()]
    assert versions == [f"{i:03d}" for i in range(1, len(versions) + 1)]


def test_statements_split_and_drop_comments():
    sql = "-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n\nCREATE TABLE b (\n  y INT\n) ;\n"
    assert migrations.statements(sql) == ["CREATE TABLE a (x INT)", "CREATE TABLE b (\n  y INT\n)"]


def test_every_table_is_innodb_utf8mb4_and_rerunnable():
    for _, path in migrations.available():
        for statement in migrations.statements(path.read_text()):
            if statement.upper().startswith("CREATE TABLE"):
                assert statement.upper().startswith("CREATE TABLE IF NOT EXISTS"), statement[:60]
                assert "ENGINE=InnoDB" in statement and "CHARSET=utf8mb4" in statement, statement[:60]


def test_default_quota_matches_limits():
    sql = (migrations.MIGRATIONS_DIR / "001_initial.sql").read_text()
    default = re.search(r"push_quota_per_minute\s+INT\s+NOT NULL DEFAULT (\d+)", sql)
    assert default and int(default.group(1)) == limits.PUSH_QUOTA_DEFAULT


def test_the_descriptors_report_retention_matches_limits():
    from services.common import paths

    xml = (paths.ROOT / "icegrid" / "pushgrid.xml").read_text()
    default = re.search(r'<variable name="retention.report.days" value="([0-9.]+)"/>', xml)
    assert default and float(default.group(1)) == limits.REPORT_RETENTION_DAYS
