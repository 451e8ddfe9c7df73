"""What each part of refdesk gets from the config: the desk's rules and each adapter's settings.

The adapters never read :class:`refdesk.config.Config`; the composition root
(:mod:`refdesk.service`, and the commands that write a registration) builds their settings here.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bridge.settings import BridgeSettings
from mailer.settings import MailSettings
from refdesk.config import Config
from refdesk.openid import OpenIDVerifier
from rooms.desk import Desk, DeskRules
from rooms.hours import ServiceHours
from rooms.ids import UserID
from rooms.offline import OfflineRules
from rooms.privacy import Retention
from rooms.queue import QueueRules
from rooms.teams import Assignment, Route, Team, TeamRules
from widget_server.app import create_app
from widget_server.settings import Invitation, WidgetSettings


def desk_rules(config: Config) -> DeskRules:
    """The parts of the config the desk core needs."""
    return DeskRules(
        topics=tuple(t.id for t in config.desk.topics),
        languages=config.desk.languages.codes,
        default_language=config.desk.default_language,
        max_message_length=config.widget.max_message_length,
        visitor_edit_window=config.widget.edit_window,
        queue=QueueRules(
            librarians=config.desk.librarians,
            supervisors=config.desk.supervisors,
            escalate_after=config.desk.escalate_after,
            teams=team_rules(config),
        ),
        desk_name=config.desk.name,
        timezone=config.desk.timezone,
        topic_labels={t.id: t.labels for t in config.desk.topics},
        email_enabled=config.email.enabled,
        greeting=config.desk.greeting,
        verify_after_claim=bool(config.verification and config.verification.auto_after_claim),
        retention=retention(config),
        reports=config.reports,
        cooperative=config.cooperative,
        attachments=config.widget.attachments,
        offline=OfflineRules(
            batch_delay=config.offline.batch_delay,
            unseen_after=config.offline.unseen_after,
            link_valid_days=config.offline.link_valid_days,
            resume_page=config.offline.resume_page or f"{config.widget.public_url}/demo",
        ),
    )


def team_rules(config: Config) -> TeamRules:
    """``desk.teams``, ``desk.routing`` and ``desk.max_active_chats`` as the core's rules."""
    desk = config.desk
    teams = tuple(
        Team(
            id=t.id,
            name=t.name,
            members=tuple(UserID(m) for m in t.members),
            hours=ServiceHours(t.hours.schedule) if t.hours is not None else None,
            first_response_target=t.first_response_target or desk.first_response_target,
            overflow_after=t.overflow_after,
            assignment=Assignment(t.assignment),
            accept_within=t.accept_within,
            max_active_chats=t.max_active_chats,
        )
        for t in desk.teams
    )
    routes = tuple(Route(r.team, r.topics, r.pages) for r in desk.routing)
    return TeamRules(teams, routes, desk.max_active_chats)


def retention(config: Config) -> Retention:
    def days(key: str) -> timedelta | None:
        kept = config.privacy.retention[key]
        return None if kept is None else timedelta(days=kept)

    return Retention(
        messages=days("messages"),
        attachments=days("attachments"),
        feedback_comments=days("feedback_comments"),
        verification_audit=days("verification_audit"),
    )


def bridge_settings(config: Config) -> BridgeSettings:
    """What the Matrix adapter needs: homeserver, appservice, and the desk as shown in rooms."""
    asc = config.appservice
    language = config.desk.default_language
    return BridgeSettings(
        homeserver_url=config.homeserver.url,
        domain=config.homeserver.domain,
        appservice_id=asc.id,
        appservice_url=asc.url,
        listen_host=asc.listen_host,
        listen_port=asc.listen_port,
        as_token=asc.as_token,
        hs_token=asc.hs_token,
        bot_localpart=asc.bot_localpart,
        bot_displayname=asc.bot_displayname,
        ghost_prefix=asc.ghost_prefix,
        desk_name=config.desk.name,
        librarians=config.desk.librarians,
        supervisors=config.desk.supervisors,
        timezone=config.desk.timezone,
        topic_labels={t.id: t.labels.get(language, t.id) for t in config.desk.topics},
        admin_token=config.homeserver.admin_token,
        dashboard_url=f"{config.widget.public_url}/reports" if config.reports.dashboard else None,
        desk_room_history_days=config.privacy.retention["messages"],
    )


def mail_settings(config: Config) -> MailSettings:
    """What the mailer needs: the SMTP relay and the sender (host None: email is off); the
    config's ``email`` section is read into that type directly."""
    return config.email


def widget_settings(config: Config) -> WidgetSettings:
    """What the visitor adapter needs: who may call it, its limits, and the desk as shown in the
    widget."""
    widget = config.widget
    invite = widget.invitation
    return WidgetSettings(
        own_origin=widget.own_origin,
        allowed_origins=widget.allowed_origins,
        trusted_proxies=widget.trusted_proxies,
        forwarded_header=widget.forwarded_header,
        max_message_length=widget.max_message_length,
        new_sessions_per_minute=widget.new_sessions_per_minute,
        desk_name=config.desk.name,
        default_language=config.desk.default_language,
        timezone=config.desk.timezone,
        topics={t.id: t.labels for t in config.desk.topics},
        languages=tuple(config.desk.languages),
        when_closed=config.hours.when_closed if config.hours is not None else "offline_form",
        sole_writer=config.database.url is None,  # SQLite: one process
        invitation=Invitation(invite.after, invite.pages, invite.text) if invite else None,
        retention_days=config.privacy.retention["messages"],
        privacy_notice=config.privacy.notice,
        privacy_link=config.privacy.link,
        dashboard=config.reports.dashboard,
        verify_openid=OpenIDVerifier(config.homeserver.url, config.homeserver.domain),
    )


def create_widget_app(config: Config, desk: Desk) -> web.Application:
    """The widget server's app for this config (the service and the in-process tests)."""
    return create_app(widget_settings(config), desk)
