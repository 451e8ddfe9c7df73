"""``!report`` on Matrix: the summary (text and a table), its chart as an image, and the viewer's
personal dashboard link, which goes to them alone (never into a shared room)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bridge.desk_room import DeskRooms
from bridge.formatting import notice
from bridge.matrix_api import MatrixClient
from rooms.charts import summary_png
from rooms.desk import Desk
from rooms.report_views import summary

if TYPE_CHECKING:
    from bridge.actions import Attempt


class ReportSender:
    def __init__(
        self,
        desk: Desk,
        client: MatrixClient,
        rooms: DeskRooms,
        topic_labels: dict[str, str],
        dashboard_url: str | None,
    ) -> None:
        self.desk = desk
        self.client = client
        self.rooms = rooms
        self.topic_labels = topic_labels
        self.dashboard_url = dashboard_url

    async def perform(self, attempt: Attempt) -> None:
        payload = attempt.intent.payload
        room_id, to = str(payload["room_id"]), str(payload["to"])
        # The label names the days (``2026-11``, ``2026-11-30..2026-12-06``): the same period
        # however late the intent is performed.
        period = self.desk.reports.period(str(payload["period"]))
        report = await self.desk.reports.report(period)
        private = await self.rooms.is_private(room_id, to)
        if self.dashboard_url is None:
            note = "The web dashboard is not served by this desk."
        elif private:
            note = "Your dashboard link follows (personal; it opens once within minutes)."
        else:
            note = "Your personal dashboard link comes to you in a private chat with me."
        text, html_body = summary(report, self.topic_labels, note)
        await attempt.send(room_id, notice(text, [], html_body), "report")
        png = await asyncio.to_thread(summary_png, report)
        filename = f"report-{report.period.label.replace('..', '_')}.png"
        mxc = await self.client.upload(png, "image/png", filename)
        width, height = _png_size(png)
        image: dict[str, Any] = {
            "msgtype": "m.image",
            "body": f"Chart of the desk report {report.period.label}",
            "filename": filename,
            "url": mxc,
            "info": {"mimetype": "image/png", "size": len(png), "w": width, "h": height},
        }
        await attempt.send(room_id, image, "report-chart")
        if self.dashboard_url is None:
            return
        token, expires = await self.desk.reports.sign(to)
        link = f"{self.dashboard_url}/open?t={token}&period={report.period.label}"
        target = (
            room_id
            if private
            else await self.rooms.private_room(
                to, "reports", "reports", "Your links to the desk's report dashboard (personal)."
            )
        )
        minutes = round((expires - self.desk.clock()).total_seconds() / 60)
        body = (
            f"Dashboard for {report.period.label}: {link}\n"
            f"Personal: do not share it. Open it within {minutes} minutes; the dashboard then "
            "stays open for your working day."
        )
        await attempt.send(target, notice(body, [to]), "report-link")

    async def pin(self, pinned: bool) -> None:
        """The dashboard as a widget at the top of the desk room (state events: setting them
        again is harmless, so a retry needs no txn id)."""
        room_id = self.rooms.desk_room_id
        if room_id is None or self.dashboard_url is None:
            return
        widget: dict[str, Any] = {}
        if pinned:
            widget = {
                "type": "m.custom",
                "id": WIDGET_ID,
                "name": "Desk reports",
                # Element adds parentUrl (and widgetId) to the address it opens.
                "url": f"{self.dashboard_url}/widget?widgetId=$matrix_widget_id",
                "data": {"title": "Reports"},
                "creatorUserId": self.client.bot_mxid,
            }
        await self.client.put_state(room_id, "im.vector.modular.widgets", widget, WIDGET_ID)
        layout = {"container": "top", "index": 0, "width": 100, "height": 60}
        await self.client.put_state(
            room_id,
            "io.element.widgets.layout",
            {"widgets": {WIDGET_ID: layout} if pinned else {}},
        )


WIDGET_ID = "refdesk_reports"


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's header (IHDR is always first)."""
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
