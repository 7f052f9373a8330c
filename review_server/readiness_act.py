"""The readiness act (акт готовности) of one run as a PDF: when, who ran it, and each station's table of checks
with the reason for each red; in Russian, with fpdf2 and DejaVu as the results protocol (protocol.py)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from . import i18n
from .protocol import FONT, FONT_BOLD


def act_pdf(run: dict[str, Any], timezone: str, made_at: dt.datetime) -> bytes:
    """`run` as readiness.run_view gives it (in Russian)."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    t = i18n.CATALOGUE["ru"]["readiness"]
    zone = zoneinfo.ZoneInfo(timezone)

    def when(moment: dt.datetime) -> str:
        return moment.astimezone(zone).strftime("%d.%m.%Y %H:%M:%S")

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.add_font("DejaVu", "", str(FONT))
    pdf.add_font("DejaVu", "B", str(FONT_BOLD if FONT_BOLD.exists() else FONT))
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()
    pdf.set_font("DejaVu", "B", 13)
    pdf.multi_cell(0, 7, t["act.title"].format(id=run["id"]), align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("DejaVu", "", 10)
    pdf.ln(2)
    checks = run["checks"]
    for line in (t["act.when"].format(when=when(run["requested_at"]), zone=timezone),
                 t["act.who"].format(who=run["requested_by"]),
                 t["act.how"].format(seconds=run["seconds"]),
                 t["act.summary"].format(ready=run["ready"], total=len(checks))):
        pdf.multi_cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    for check in checks:
        pdf.ln(3)
        pdf.set_font("DejaVu", "B", 11)
        if check["state"] in ("requested", "claimed", "recording", "uploading"):
            verdict = t[f"state.{check['state']}"]
        else:
            verdict = t["act.ready"] if check["ok"] else t["act.not_ready"]
        pdf.multi_cell(0, 6, t["act.station"].format(code=check["station"], name=check["station_name"],
                                                     verdict=verdict), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("DejaVu", "", 9)
        with pdf.table(col_widths=(50, 22, 118), text_align="LEFT", line_height=5,
                       headings_style=FontFace(emphasis="BOLD")) as table:
            table.row([t["col_item"], t["col_result"], t["col_value"]])
            for result in check["results"]:
                label = result["label"] + (f" {result['subject']}" if result["subject"] else "")
                mark = t["mark_ok"] if result["ok"] else t["mark_bad"] if result["ok"] is False else t["mark_none"]
                text = "\n".join(x for x in (result["value"], *result["reasons"], result["detail"] or "") if x)
                table.row([label, mark, text])
    pdf.ln(6)
    pdf.set_font("DejaVu", "", 10)
    pdf.multi_cell(0, 6, t["act.made"].format(when=when(made_at)), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.multi_cell(0, 6, t["act.sign"].format(who=run["requested_by"]), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
