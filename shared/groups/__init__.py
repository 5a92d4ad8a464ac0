"""Group conversations: several people and the assistant in one ordered history
(``docs/http.md``, "Groups and real-time"; ``docs/design.md``, "Groups").

``models`` holds the stored records and the API bodies (importable by the stores);
``service`` the rules (membership, messages, asking the assistant, data rights).
"""
