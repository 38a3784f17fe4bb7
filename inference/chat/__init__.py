"""The department chat: the websocket consumer and its protocol, conversations (services and
selectors), the chat pages of the portal, and the per-user turn limit."""
