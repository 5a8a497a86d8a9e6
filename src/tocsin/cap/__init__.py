"""Reading and checking CAP documents: `xml` parses (hardened, one reader for every door),
`check` validates against the OASIS CAP 1.2 schema, the spec's rules and named profiles."""
