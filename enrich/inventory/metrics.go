package inventory

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	devicesLoaded = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "exfilwatch_inventory_devices",
		Help: "Devices in the loaded lab inventory.",
	})
	badEntries = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "exfilwatch_inventory_problems",
		Help: "Skipped entries and warnings in the loaded lab inventory.",
	})
	reloadErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "exfilwatch_inventory_reload_errors_total",
		Help: "Inventory or lease file reloads that failed (the previous state stayed in service).",
	})
)
