package clickhouse

import (
	"strings"
	"testing"
)

// unquote reverses a ClickHouse single-quoted literal with backslash escapes.
func unquote(t *testing.T, lit string) string {
	if len(lit) < 2 || lit[0] != '\'' || lit[len(lit)-1] != '\'' {
		t.Fatalf("not a quoted literal: %q", lit)
	}
	var b strings.Builder
	body := lit[1 : len(lit)-1]
	for i := 0; i < len(body); i++ {
		c := body[i]
		if c == '\'' {
			t.Fatalf("unescaped quote in %q", lit)
		}
		if c == '\\' {
			i++
			if i == len(body) {
				t.Fatalf("dangling backslash in %q", lit)
			}
			c = body[i]
		}
		b.WriteByte(c)
	}
	return b.String()
}

// FuzzRenderQuery: a String parameter always becomes one well-formed
// literal holding exactly the value, whatever it contains, so a parameter
// can never break out of its literal.
func FuzzRenderQuery(f *testing.F) {
	for _, s := range []string{"CN", "it's", `a\'b`, `\`, "x' OR 1=1 --", "{c:String}", "\x00\n'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		out, err := RenderQuery("SELECT {c:String} AS x", map[string]any{"c": v})
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := strings.CutPrefix(out, "SELECT ")
		if !ok {
			t.Fatalf("prefix changed: %q", out)
		}
		lit, ok = strings.CutSuffix(lit, " AS x")
		if !ok {
			t.Fatalf("suffix changed: %q", out)
		}
		if got := unquote(t, lit); got != v {
			t.Fatalf("literal %q holds %q, want %q", lit, got, v)
		}
	})
}
