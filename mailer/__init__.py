"""The mail adapter: sends the store's mail outbox (transcripts, replies to offline messages)
over SMTP, with the settings the composition root gives it."""
