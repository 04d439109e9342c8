"""What the server may reach on an organization's behalf: which repository locations a project may
name (``repo_urls``) and which network addresses a server-side fetch may connect to (``network``).
Both import nothing of ours, so the git mirror, outbound webhooks and any later fetch share them."""
