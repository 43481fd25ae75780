package collector

// SourceNames returns every socket-state source ValidateSource accepts, in
// the order help lists them: shell completion takes the list from here.
func SourceNames() []string { return []string{SourceAuto, SourceNetlink, SourceProc} }
