package ident

// ExpandForms lists every (form name, string) pair the index is built from
// for one identifier, in expansion order, before the index drops strings
// shorter than 4 characters and keeps the first form of equal strings. The
// form tests compare it with a table computed independently.
func ExpandForms(t Type, v string) ([][2]string, error) {
	vs, err := baseVariants(t, v)
	if err != nil {
		return nil, err
	}
	var out [][2]string
	newExpander().expand(vs, func(s string, f form) { out = append(out, [2]string{f.String(), s}) })
	return out, nil
}
