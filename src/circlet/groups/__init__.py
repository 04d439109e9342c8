"""Groups of users inside an organization (the Groups tag), used by context restrictions."""
