"""The Deploy and Rollback tags: environments, components and their versions, recorded by jobs'
deploy markers (`circleci run release`), and rollbacks of a component to an earlier version."""
