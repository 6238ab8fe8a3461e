package config

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Example renders cfg (holding the defaults) as a commented YAML file: every
// key with its help text and default value, so the documented example can
// never drift from the code.
func Example(cfg any) []byte {
	var b bytes.Buffer
	writeExample(&b, reflect.ValueOf(cfg).Elem(), 0)
	return b.Bytes()
}

func writeExample(b *bytes.Buffer, v reflect.Value, depth int) {
	ind := strings.Repeat("  ", depth)
	eachField(v, func(sf reflect.StructField, name string, inline bool, fv reflect.Value) {
		if inline {
			writeExample(b, fv, depth)
			return
		}
		if help := sf.Tag.Get("help"); help != "" {
			fmt.Fprintf(b, "%s# %s\n", ind, help)
		}
		if sf.Type.Kind() == reflect.Struct && !isLeafStruct(sf.Type) {
			fmt.Fprintf(b, "%s%s:\n", ind, name)
			writeExample(b, fv, depth+1)
			if depth == 0 {
				b.WriteString("\n")
			}
			return
		}
		fmt.Fprintf(b, "%s%s: %s\n", ind, name, exampleValue(fv))
	})
}

func exampleValue(v reflect.Value) string {
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		if v.Kind() != reflect.Array && v.Len() == 0 {
			if v.Kind() == reflect.Map {
				return "{}"
			}
			return "[]"
		}
		if v.Kind() == reflect.Array && v.Type().Elem() == reflect.TypeFor[time.Duration]() {
			parts := make([]string, v.Len())
			for i := range parts {
				parts[i] = time.Duration(v.Index(i).Int()).String()
			}
			return "[" + strings.Join(parts, ", ") + "]"
		}
	case reflect.String:
		if v.String() == "" {
			return `""`
		}
	}
	out, err := yaml.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprintf("%v", v.Interface())
	}
	s := strings.TrimSpace(string(out))
	if k := v.Kind(); k == reflect.Slice || k == reflect.Array || k == reflect.Map || k == reflect.Struct || strings.Contains(s, "\n") {
		// Flow style keeps composite defaults on one line.
		var n yaml.Node
		if yaml.Unmarshal(out, &n) == nil {
			setFlow(&n)
			if o, err := yaml.Marshal(&n); err == nil {
				return strings.TrimSpace(string(o))
			}
		}
	}
	return s
}

func setFlow(n *yaml.Node) {
	n.Style |= yaml.FlowStyle
	for _, c := range n.Content {
		setFlow(c)
	}
}
