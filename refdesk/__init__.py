"""refdesk: a live-chat reference desk for libraries on Matrix. The composition root lives here."""

__version__ = "0.1.0"
