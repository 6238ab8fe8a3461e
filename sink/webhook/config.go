// Package webhook delivers alerts to HTTP endpoints as JSON, signed per the
// Standard Webhooks specification, with retries, per-endpoint rate limits
// and dead-lettering of alerts an endpoint refuses permanently.
//
// Delivery is at least once and settles every alert before Deliver returns:
// each alert is either acknowledged (2xx) by every endpoint or handed back
// as dead-lettered, so the caller commits its Kafka offsets afterwards. The
// webhook-id header is stable for an alert version (id + created time), so
// receivers drop the duplicates a redelivery after a crash produces.
package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Payload formats.
const (
	FormatGeneric      = "generic"      // exfilwatch's own schema (docs/sink.md)
	FormatSlack        = "slack"        // Slack incoming webhook: text + blocks
	FormatAlertmanager = "alertmanager" // Alertmanager v2 POST /api/v2/alerts array
)

// EndpointConfig is one receiver.
type EndpointConfig struct {
	Name          string        `yaml:"name" help:"endpoint name used in logs and metric labels"`
	URL           string        `yaml:"url" help:"http(s) URL the alerts are POSTed to"`
	Format        string        `yaml:"format" help:"payload format: generic, slack or alertmanager"`
	Secret        string        `yaml:"secret" help:"Standard Webhooks signing secret, whsec_ + base64 (empty: unsigned)"`
	RatePerSecond float64       `yaml:"rate_per_second" help:"most requests per second to this endpoint (Slack: 1)"`
	Burst         int           `yaml:"burst" help:"requests allowed at once before the rate limit applies"`
	Timeout       time.Duration `yaml:"timeout" help:"timeout of one request, including reading the response"`
	GeneratorURL  string        `yaml:"generator_url" help:"alertmanager format: link to put in generatorURL (optional)"`
}

// Config configures all endpoints and the retry policy.
type Config struct {
	Endpoints    []EndpointConfig `yaml:"endpoints" help:"receivers every alert is delivered to"`
	RetryInitial time.Duration    `yaml:"retry_initial" help:"first backoff after a failed attempt"`
	RetryMax     time.Duration    `yaml:"retry_max" help:"largest backoff between attempts (Retry-After is honoured up to this)"`
	MaxAttempts  int              `yaml:"max_attempts" help:"attempts per alert and endpoint before dead-lettering it (0: retry until shutdown)"`
	GiveUpAfter  time.Duration    `yaml:"give_up_after" help:"time per alert and endpoint before dead-lettering it (0: retry until shutdown)"`
	UserAgent    string           `yaml:"user_agent" help:"User-Agent header of the requests"`
}

// DefaultConfig has no endpoints and retries a transient failure forever
// (an endpoint that is down holds the pipeline back instead of losing
// alerts), backing off from 1 s to 5 min.
func DefaultConfig() Config {
	return Config{
		RetryInitial: time.Second,
		RetryMax:     5 * time.Minute,
		UserAgent:    "exfilwatch-webhook/1",
	}
}

// DefaultEndpoint fills the per-endpoint defaults for a format.
func DefaultEndpoint(name, url, format string) EndpointConfig {
	e := EndpointConfig{Name: name, URL: url, Format: format, RatePerSecond: 10, Burst: 5, Timeout: 15 * time.Second}
	if format == FormatSlack {
		e.RatePerSecond, e.Burst = 1, 1 // Slack: 1 message per second per channel
	}
	return e
}

// Validate reports the first invalid setting, prefixed with its yaml key.
func (c Config) Validate() error {
	names := map[string]bool{}
	for i, e := range c.Endpoints {
		key := fmt.Sprintf("endpoints[%d]", i)
		if e.Name == "" {
			return fmt.Errorf("%s.name: must be set", key)
		}
		if names[e.Name] {
			return fmt.Errorf("%s.name: duplicate %q", key, e.Name)
		}
		names[e.Name] = true
		u, err := url.Parse(e.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s.url: want an http(s) URL: %q", key, e.URL)
		}
		switch e.Format {
		case FormatGeneric, FormatSlack, FormatAlertmanager:
		default:
			return fmt.Errorf("%s.format: want generic, slack or alertmanager: %q", key, e.Format)
		}
		if e.Secret != "" {
			if _, err := decodeSecret(e.Secret); err != nil {
				return fmt.Errorf("%s.secret: %w", key, err)
			}
		}
		if e.RatePerSecond <= 0 {
			return fmt.Errorf("%s.rate_per_second: must be > 0", key)
		}
		if e.Burst < 1 {
			return fmt.Errorf("%s.burst: must be >= 1", key)
		}
		if e.Timeout <= 0 {
			return fmt.Errorf("%s.timeout: must be > 0", key)
		}
	}
	if c.RetryInitial <= 0 {
		return errors.New("retry_initial: must be > 0")
	}
	if c.RetryMax < c.RetryInitial {
		return errors.New("retry_max: must be >= retry_initial")
	}
	if c.MaxAttempts < 0 {
		return errors.New("max_attempts: must be >= 0")
	}
	if c.GiveUpAfter < 0 {
		return errors.New("give_up_after: must be >= 0")
	}
	return nil
}

// decodeSecret turns "whsec_<base64>" into the HMAC key bytes.
func decodeSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, errors.New("must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("not base64 after whsec_: %w", err)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("key is %d bytes, want 24 to 64", len(key))
	}
	return key, nil
}
