// Package config loads exfilwatch's configuration: one YAML file whose every
// key can be overridden by an EXFILWATCH_* environment variable and by a
// command-line flag (precedence: defaults < file < environment < flags).
//
// The configuration is a tree of plain structs. Field names come from their
// `yaml` tags and their help text from `help` tags, so adding a setting to a
// stage's Config struct makes it appear in the file, the environment and
// --help at once. Errors always name the key they concern, so `main` can print
// one line and exit 2.
package config

import (
	"encoding"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is a configuration error about one key. Its message is one line.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "config: " + e.Msg
	}
	return "config: " + e.Key + ": " + e.Msg
}

// Errorf builds an Error for key.
func Errorf(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Validator is implemented by config sections that check their own values.
// Errors should start with the section-relative key they concern
// ("city_db: file not found"); LoadInto prefixes the section's path.
type Validator interface{ Validate() error }

// Field describes one leaf setting.
type Field struct {
	Key  string // dotted yaml path, e.g. "kafka.brokers"
	Env  string // EXFILWATCH_KAFKA_BROKERS
	Flag string // kafka.brokers
	Help string
	v    reflect.Value
}

// Fields lists every leaf setting reachable from the struct pointed to by cfg.
func Fields(cfg any) []Field {
	var out []Field
	walk(reflect.ValueOf(cfg).Elem(), "", "", &out)
	return out
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func walk(v reflect.Value, prefix, help string, out *[]Field) {
	eachField(v, func(sf reflect.StructField, name string, inline bool, fv reflect.Value) {
		if inline {
			walk(fv, prefix, help, out)
			return
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if sf.Type.Kind() == reflect.Struct && !isLeafStruct(sf.Type) {
			walk(fv, key, sf.Tag.Get("help"), out)
			return
		}
		*out = append(*out, Field{
			Key:  key,
			Env:  "EXFILWATCH_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(key)),
			Flag: key,
			Help: sf.Tag.Get("help"),
			v:    fv,
		})
	})
}

// eachField calls fn for every exported field of struct v that the YAML
// mapping does not skip, with its key name and whether it is inlined.
func eachField(v reflect.Value, fn func(sf reflect.StructField, name string, inline bool, fv reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, inline := yamlName(sf)
		if name == "-" {
			continue
		}
		fn(sf, name, inline, v.Field(i))
	}
}

func isLeafStruct(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(textUnmarshaler) || t == reflect.TypeFor[time.Time]()
}

func yamlName(sf reflect.StructField) (string, bool) {
	tag := sf.Tag.Get("yaml")
	parts := strings.Split(tag, ",")
	for _, p := range parts[1:] {
		if p == "inline" {
			return "", true
		}
	}
	if parts[0] == "" {
		return strings.ToLower(sf.Name), false
	}
	return parts[0], false
}

// LoadFile merges the YAML file at path into cfg (a pointer to a struct),
// rejecting unknown keys and ill-typed values with the key's dotted path.
func LoadFile(path string, cfg any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Errorf("", "file not found: %s", path)
		}
		return Errorf("", "read %s: %v", path, err)
	}
	return LoadYAML(data, cfg)
}

// LoadYAML merges YAML text into cfg; see LoadFile.
func LoadYAML(data []byte, cfg any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Errorf("", "invalid YAML: %s", oneLine(err.Error()))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty file
	}
	return decodeNode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
}

func decodeNode(n *yaml.Node, v reflect.Value, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.Kind() == reflect.Struct && !isLeafStruct(v.Type()) {
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return Errorf(path, "line %d: expected a mapping", n.Line)
		}
		fields := map[string]reflect.Value{}
		collectFields(v, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := k.Value
			full := key
			if path != "" {
				full = path + "." + key
			}
			fv, ok := fields[key]
			if !ok {
				return Errorf(full, "line %d: unknown key (known: %s)", k.Line, strings.Join(sortedKeys(fields), ", "))
			}
			if err := decodeNode(val, fv, full); err != nil {
				return err
			}
		}
		return nil
	}
	if v.Type() == reflect.TypeFor[time.Duration]() {
		d, err := parseDuration(n.Value)
		if err != nil {
			return Errorf(path, "line %d: %v", n.Line, err)
		}
		v.SetInt(int64(d))
		return nil
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		return Errorf(path, "line %d: %s", n.Line, oneLine(stripYAMLPrefix(err.Error())))
	}
	return nil
}

func collectFields(v reflect.Value, into map[string]reflect.Value) {
	eachField(v, func(_ reflect.StructField, name string, inline bool, fv reflect.Value) {
		if inline {
			collectFields(fv, into)
			return
		}
		into[name] = fv
	})
}

func sortedKeys(m map[string]reflect.Value) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func stripYAMLPrefix(s string) string {
	s = strings.TrimPrefix(s, "yaml: unmarshal errors:\n")
	return strings.TrimSpace(s)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func parseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	// A bare number is seconds: "idle_timeout: 15".
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	return 0, fmt.Errorf("invalid duration %q (want e.g. 15s, 2m, 1h)", s)
}

// SetString assigns a textual value (from an env var or flag) to a leaf.
func setString(v reflect.Value, s string) error {
	if v.CanAddr() && v.Addr().Type().Implements(textUnmarshaler) {
		return v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if v.Type() == reflect.TypeFor[time.Duration]() {
			d, err := parseDuration(s)
			if err != nil {
				return err
			}
			v.SetInt(int64(d))
			return nil
		}
		n, err := strconv.ParseInt(s, 0, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 0, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid unsigned integer %q", s)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("invalid number %q", s)
		}
		v.SetFloat(f)
	case reflect.Slice:
		parts := []string{}
		if strings.TrimSpace(s) != "" {
			parts = strings.Split(s, ",")
		}
		sl := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setString(sl.Index(i), strings.TrimSpace(p)); err != nil {
				return err
			}
		}
		v.Set(sl)
	default:
		// Maps and other composite values: accept inline YAML.
		if err := yaml.Unmarshal([]byte(s), v.Addr().Interface()); err != nil {
			return fmt.Errorf("invalid value %q: %s", s, oneLine(stripYAMLPrefix(err.Error())))
		}
	}
	return nil
}

func formatValue(v reflect.Value) string {
	if v.CanAddr() {
		if m, ok := v.Addr().Interface().(encoding.TextMarshaler); ok {
			b, _ := m.MarshalText()
			return string(b)
		}
	}
	switch v.Kind() {
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = formatValue(v.Index(i))
		}
		return strings.Join(parts, ",")
	case reflect.Map:
		if v.Len() == 0 {
			return ""
		}
		b, _ := yaml.Marshal(v.Interface())
		return oneLine(string(b))
	}
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return time.Duration(v.Int()).String()
	}
	return fmt.Sprint(v.Interface())
}

// ApplyEnv overrides leaves from EXFILWATCH_* variables present in environ.
func ApplyEnv(cfg any, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "EXFILWATCH_") {
			env[k] = val
		}
	}
	for _, f := range Fields(cfg) {
		if s, ok := env[f.Env]; ok {
			if err := setString(f.v, s); err != nil {
				return Errorf(f.Key, "from %s: %v", f.Env, err)
			}
		}
	}
	return nil
}

// flagValue adapts a leaf to flag.Value, recording that it was set.
type flagValue struct {
	f   Field
	set *[]func() error
}

func (fv flagValue) String() string {
	if !fv.f.v.IsValid() {
		return ""
	}
	return formatValue(fv.f.v)
}

func (fv flagValue) Set(s string) error {
	// Defer assignment until after the file and env are applied, so flags win.
	f := fv.f
	*fv.set = append(*fv.set, func() error {
		if err := setString(f.v, s); err != nil {
			return Errorf(f.Key, "from --%s: %v", f.Flag, err)
		}
		return nil
	})
	return nil
}

func (fv flagValue) IsBoolFlag() bool { return fv.f.v.IsValid() && fv.f.v.Kind() == reflect.Bool }

// Loader binds a config struct to a FlagSet and applies the layers in order.
type Loader struct {
	cfg      any
	file     string
	pending  []func() error
	sections []string
}

// Bind registers one flag per leaf of cfg (a pointer to a struct holding its
// defaults) plus --config, and returns a Loader whose Load applies the file,
// the environment and the flags, then validates. With sections given, only
// leaves under those top-level keys (and top-level leaves) get flags, so a
// subcommand's --help lists what concerns it; the file and the environment
// still reach every key.
func Bind(fs *flag.FlagSet, cfg any, sections ...string) *Loader {
	l := &Loader{cfg: cfg, sections: sections}
	fs.StringVar(&l.file, "config", os.Getenv("EXFILWATCH_CONFIG"), "YAML configuration file (env EXFILWATCH_CONFIG); flags and EXFILWATCH_* variables override its keys")
	for _, f := range Fields(cfg) {
		if top, _, nested := strings.Cut(f.Key, "."); nested && len(sections) > 0 && !slices.Contains(sections, top) {
			continue
		}
		help := f.Help
		if help == "" {
			help = f.Key
		}
		fs.Var(flagValue{f: f, set: &l.pending}, f.Flag, help+" (env "+f.Env+")")
	}
	return l
}

// Load applies file, environment and flags (after fs.Parse) and validates
// the top level and the bound sections (all sections when none were named).
func (l *Loader) Load() error {
	if err := l.LoadOnly(); err != nil {
		return err
	}
	return ValidateSections(l.cfg, l.sections...)
}

// LoadOnly is Load without validation, for callers that fill in some values
// themselves and validate afterwards.
func (l *Loader) LoadOnly() error {
	if l.file != "" {
		if err := LoadFile(l.file, l.cfg); err != nil {
			return err
		}
	}
	if err := ApplyEnv(l.cfg, os.Environ()); err != nil {
		return err
	}
	for _, set := range l.pending {
		if err := set(); err != nil {
			return err
		}
	}
	return nil
}

// Validate calls Validate on every section implementing Validator, prefixing
// errors with the section's path.
func Validate(cfg any) error {
	return validate(reflect.ValueOf(cfg).Elem(), "", nil)
}

// ValidateSections is Validate restricted to the named top-level sections
// (and the top-level keys); with no section named it validates everything.
func ValidateSections(cfg any, sections ...string) error {
	return validate(reflect.ValueOf(cfg).Elem(), "", sections)
}

func validate(v reflect.Value, path string, only []string) error {
	if v.CanAddr() {
		if val, ok := v.Addr().Interface().(Validator); ok {
			if err := val.Validate(); err != nil {
				var ce *Error
				if errors.As(err, &ce) {
					return err
				}
				msg := oneLine(err.Error())
				if path != "" {
					msg = path + "." + msg
				}
				return &Error{Msg: msg}
			}
		}
	}
	var err error
	eachField(v, func(sf reflect.StructField, name string, inline bool, fv reflect.Value) {
		if err != nil || sf.Type.Kind() != reflect.Struct || isLeafStruct(sf.Type) {
			return
		}
		p := path
		if !inline {
			if path == "" && len(only) > 0 && !slices.Contains(only, name) {
				return
			}
			if p != "" {
				p += "."
			}
			p += name
		}
		err = validate(fv, p, nil)
	})
	return err
}
