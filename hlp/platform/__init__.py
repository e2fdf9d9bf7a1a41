"""Everything that touches the world: data, protocols, training, tracking and the CLI."""
