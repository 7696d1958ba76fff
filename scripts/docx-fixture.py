#!/usr/bin/env python3
"""Writes the Word fixture the search tests read (shared/dataflow-search/tests/fixtures/runbook.docx):
a title in the document properties, Title and Heading 1/2 paragraphs, body text with an ampersand
and accents, a tab, and a table. Needs python-docx (pip install python-docx==1.2.0).

    python3 scripts/docx-fixture.py [OUT]
"""
import sys

import docx

out = sys.argv[1] if len(sys.argv) > 1 else "shared/dataflow-search/tests/fixtures/runbook.docx"
d = docx.Document()
d.core_properties.title = "Rotation runbook"
d.add_paragraph("Rotation runbook", style="Title")
d.add_heading("Rotating keys", level=1)
d.add_paragraph("Rotate the signing keys every 90 days & record who did it.")
p = d.add_paragraph("Step one:\tcreate the new key; café staff need not be told.")
d.add_heading("Revoking a leaked key", level=2)
d.add_paragraph("Revoke a leaked key at once, then rotate the others.")
t = d.add_table(rows=2, cols=2)
t.cell(0, 0).text = "Key"
t.cell(0, 1).text = "Owner"
t.cell(1, 0).text = "signing"
t.cell(1, 1).text = "platform team"
d.save(out)
