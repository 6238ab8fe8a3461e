package collector

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/exfilwatch/exfilwatch/collector/decode"
	"github.com/exfilwatch/exfilwatch/collector/flow"
	"github.com/exfilwatch/exfilwatch/schema/flowpb"
)

// Stats are the progress counters of one ReadPcap call.
type Stats struct {
	Packets   uint64                    // frames read from the file
	WireBytes uint64                    // their original (wire) lengths
	Counted   uint64                    // frames decoded and counted into flows
	L3Bytes   uint64                    // L3 bytes counted (counting rules)
	Skipped   [decode.NumReasons]uint64 // frames not counted, by decode.Reason (index 0 unused)
	Flows     uint64                    // flows created
	Records   uint64                    // records emitted
	Evicted   uint64                    // flows evicted because the table was full
	Table     flow.TableStats           // full table counters
}

// Option changes how ReadPcap builds its flow table.
type Option func(*options)

type options struct {
	parse flow.ParseFunc
}

// WithParse sets the payload parse hook called on each record before emit.
func WithParse(p flow.ParseFunc) Option { return func(o *options) { o.parse = p } }

// countingReader counts bytes handed to the pcap reader, to say where in
// the file damage was found.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// packetSource abstracts the classic pcap and pcapng readers.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

const metricBatch = 1024

// ReadPcap replays a pcap or pcapng capture (optionally gzipped) through the
// decoder and a fresh flow table and emits every flow record. Time comes
// from packet timestamps, so timeouts behave as they did on the wire; all
// flows still open at the end are exported with END_REASON_END_OF_CAPTURE.
//
// A truncated or damaged file does not lose what came before the damage:
// the flows collected so far are exported and the returned error says at
// which packet number and byte offset reading stopped. Emit errors are
// returned joined, after the whole file was read.
func ReadPcap(ctx context.Context, r io.Reader, cfg Config, emit flow.EmitFunc, opts ...Option) (Stats, error) {
	var st Stats
	if err := cfg.Validate(); err != nil {
		return st, fmt.Errorf("collector config: %w", err)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cr := &countingReader{r: r}
	br := bufio.NewReaderSize(cr, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return st, fmt.Errorf("read pcap header: %w", err)
	}
	var in io.Reader = br
	if magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return st, fmt.Errorf("read gzip header: %w", err)
		}
		gbr := bufio.NewReaderSize(gz, 1<<16)
		if magic, err = gbr.Peek(4); err != nil {
			return st, fmt.Errorf("read pcap header: %w", err)
		}
		in = gbr
	}

	var src packetSource
	var ng *pcapgo.NgReader
	var classicLink decode.LinkType
	classic := !(magic[0] == 0x0a && magic[1] == 0x0d && magic[2] == 0x0d && magic[3] == 0x0a)
	if classic {
		pr, err := pcapgo.NewReader(in)
		if err != nil {
			return st, fmt.Errorf("read pcap header: %w", err)
		}
		classicLink = decode.LinkType(pr.LinkType())
		src = pr
	} else {
		ng, err = pcapgo.NewNgReader(in, pcapgo.NgReaderOptions{})
		if err != nil {
			return st, fmt.Errorf("read pcapng section header: %w", err)
		}
		src = ng
	}

	tc := cfg.TableConfig(o.parse)
	if len(tc.Interfaces) == 0 && ng != nil {
		for i := 0; i < ng.NInterfaces() && i < 64; i++ {
			if ifc, err := ng.Interface(i); err == nil {
				tc.Interfaces = append(tc.Interfaces, ifc.Name)
			}
		}
	}
	if len(tc.Interfaces) == 0 {
		tc.Interfaces = []string{"pcap"}
	}
	table := flow.NewTable(tc, emit)

	var (
		p       flow.Packet
		errs    []error
		offset  int64 = 24 // classic pcap: exact offset of the next record
		lastMet Stats
		readErr error
	)
	// A panic in the pcap library on a hostile file must not take the
	// process down: it becomes a read error at the current packet, and the
	// flows so far are still exported below.
	func() {
		defer func() {
			if r := recover(); r != nil {
				readErr = fmt.Errorf("pcap reader failed at packet %d: %v", st.Packets+1, r)
			}
		}()
		for {
			if st.Packets%metricBatch == 0 {
				if err := ctx.Err(); err != nil {
					readErr = fmt.Errorf("replay cancelled after packet %d: %w", st.Packets, err)
					break
				}
				publish(&st, &lastMet)
			}
			data, ci, err := src.ZeroCopyReadPacketData()
			if err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				where := fmt.Sprintf("byte offset %d", offset)
				if !classic {
					where = fmt.Sprintf("within the first %d bytes of the file", cr.n)
				}
				readErr = fmt.Errorf("pcap damaged at packet %d (%s): %w", st.Packets+1, where, err)
				break
			}
			offset += 16 + int64(ci.CaptureLength)
			st.Packets++
			st.WireBytes += uint64(ci.Length)
			link := classicLink
			p.Interface = 0
			if ng != nil {
				if ifc, err := ng.Interface(ci.InterfaceIndex); err == nil {
					link = decode.LinkType(ifc.LinkType)
				}
				if ci.InterfaceIndex >= 0 && ci.InterfaceIndex < 64 {
					p.Interface = uint8(ci.InterfaceIndex)
				}
			}
			p.TimeNs = ci.Timestamp.UnixNano()
			if reason := decode.Decode(link, data, ci.Length, &p); reason != decode.OK {
				st.Skipped[reason]++
				continue
			}
			st.Counted++
			st.L3Bytes += p.L3Bytes
			if err := table.Observe(&p); err != nil {
				errs = append(errs, err)
			}
		}
	}()
	if err := table.Flush(flowpb.EndReason_END_REASON_END_OF_CAPTURE); err != nil {
		errs = append(errs, err)
	}
	ts := table.Stats()
	st.Table = ts
	st.Flows = ts.Flows
	st.Records = ts.ExportedTotal()
	st.Evicted = ts.Evicted
	publish(&st, &lastMet)
	if readErr != nil {
		errs = append([]error{readErr}, errs...)
	}
	return st, errors.Join(errs...)
}
