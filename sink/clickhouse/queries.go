package clickhouse

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var paramRE = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*):([A-Za-z0-9_()]+)\}`)

// RenderQuery replaces ClickHouse query parameters ({name:Type}) in a saved
// query (deploy/clickhouse/queries) with literals, for servers older than
// 19.15 that have no parameter support. Values: time.Time or string for
// DateTime, string for String, Go numbers (or numeric strings) for the
// (U)Int*/Float* types (written as bare literals). A missing parameter or unsupported type is an error.
func RenderQuery(sql string, params map[string]any) (string, error) {
	var firstErr error
	out := paramRE.ReplaceAllStringFunc(sql, func(m string) string {
		sub := paramRE.FindStringSubmatch(m)
		name, typ := sub[1], sub[2]
		v, ok := params[name]
		if !ok {
			if firstErr == nil {
				firstErr = fmt.Errorf("query parameter %s (%s) not given", name, typ)
			}
			return m
		}
		lit, err := literal(typ, v)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("query parameter %s: %w", name, err)
		}
		return lit
	})
	return out, firstErr
}

func literal(typ string, v any) (string, error) {
	switch {
	case typ == "String":
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("want string for String, got %T", v)
		}
		return quote(s), nil
	case typ == "DateTime":
		switch t := v.(type) {
		case time.Time:
			return "toDateTime('" + t.UTC().Format(time.DateTime) + "')", nil
		case string:
			if _, err := time.Parse(time.DateTime, t); err != nil {
				return "", fmt.Errorf("DateTime %q: want YYYY-MM-DD hh:mm:ss", t)
			}
			return "toDateTime('" + t + "')", nil
		}
		return "", fmt.Errorf("want time.Time or string for DateTime, got %T", v)
	case strings.HasPrefix(typ, "UInt"), strings.HasPrefix(typ, "Int"), strings.HasPrefix(typ, "Float"):
		var s string
		switch n := v.(type) {
		case string:
			s = n
		default:
			s = fmt.Sprint(n)
		}
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return "", fmt.Errorf("%s: not a number: %q", typ, s)
		}
		if strings.HasPrefix(typ, "UInt") && strings.HasPrefix(s, "-") {
			return "", fmt.Errorf("%s: negative: %s", typ, s)
		}
		return s, nil // a bare literal: also valid where 18.16 wants one (LIMIT n BY)
	}
	return "", fmt.Errorf("unsupported parameter type %s", typ)
}

// quote makes a ClickHouse string literal.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}
