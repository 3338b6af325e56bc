"""Test helpers, imported explicitly (`from support.smtp_servers import SmtpServer`): real local servers on
127.0.0.1 port 0 (SMTP, social APIs, feeds), a project on disk, a scheduler process, the browser, error lines.

Servers and processes are context managers or fixtures that close themselves when the test ends.
"""
