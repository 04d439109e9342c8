"""Pipelines that start by themselves: forge webhooks (GitHub, GitLab, Gitea/Forgejo), polled
repositories, and the custom webhooks of the spec's `webhook` trigger provider."""
