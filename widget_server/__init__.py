"""The visitor adapter: the embeddable widget, the visitor API (REST + WebSocket), the demo."""
