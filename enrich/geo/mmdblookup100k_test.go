package geo

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/exfilwatch/exfilwatch/internal/testenv"
)

// mmdbBatchSource is a batch mmdblookup: mmdblookup (Debian mmdb-bin) is a
// thin CLI over libmaxminddb, and this program makes the same library calls
// it makes for `--file F --ip IP` (MMDB_open in MMAP mode,
// MMDB_lookup_string, MMDB_get_entry_data_list, MMDB_dump_entry_data_list
// with indent 2) for every address read from stdin, one process for all of
// them. One mmdblookup process per address costs about 4 ms on this
// machine, so 100,000 addresses per database would take minutes; the batch
// program answers them in well under a second. Each answer is followed by a
// line holding only "\x1e"; a miss prints NOTFOUND, a failed lookup
// ERROR and the reason. TestMMDBBatchEqualsMMDBLookup checks its dumps are
// mmdblookup's, byte for byte, on a sample.
const mmdbBatchSource = `#include <maxminddb.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
	MMDB_s mmdb;
	char line[512];
	if (argc != 2) {
		fprintf(stderr, "usage: %s FILE < addresses\n", argv[0]);
		return 2;
	}
	int st = MMDB_open(argv[1], MMDB_MODE_MMAP, &mmdb);
	if (st != MMDB_SUCCESS) {
		fprintf(stderr, "open %s: %s\n", argv[1], MMDB_strerror(st));
		return 2;
	}
	while (fgets(line, sizeof line, stdin)) {
		int gai = 0, err = MMDB_SUCCESS;
		line[strcspn(line, "\r\n")] = 0;
		MMDB_lookup_result_s r = MMDB_lookup_string(&mmdb, line, &gai, &err);
		if (gai != 0) {
			printf("ERROR getaddrinfo: %s\n", gai_strerror(gai));
		} else if (err != MMDB_SUCCESS) {
			printf("ERROR lookup: %s\n", MMDB_strerror(err));
		} else if (!r.found_entry) {
			printf("NOTFOUND\n");
		} else {
			MMDB_entry_data_list_s *list = NULL;
			st = MMDB_get_entry_data_list(&r.entry, &list);
			if (st != MMDB_SUCCESS) {
				printf("ERROR data: %s\n", MMDB_strerror(st));
			} else {
				MMDB_dump_entry_data_list(stdout, list, 2);
			}
			MMDB_free_entry_data_list(list);
		}
		printf("\x1e\n");
	}
	MMDB_close(&mmdb);
	return 0;
}
`

// mmdbBatch compiles mmdbBatchSource with cc against libmaxminddb (Debian
// libmaxminddb-dev, installed by scripts/deps.sh) into the test's temporary
// directory.
func mmdbBatch(t *testing.T) string {
	t.Helper()
	cc := testenv.Tool(t, "cc")
	dir := t.TempDir()
	src := filepath.Join(dir, "mmdbbatch.c")
	if err := os.WriteFile(src, []byte(mmdbBatchSource), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "mmdbbatch")
	if out, err := exec.Command(cc, "-O2", "-o", bin, src, "-lmaxminddb").CombinedOutput(); err != nil {
		if testenv.Required() {
			t.Fatalf("compiling the libmaxminddb batch lookup (needs libmaxminddb-dev): %v: %s", err, out)
		}
		t.Skipf("libmaxminddb batch lookup not available (install libmaxminddb-dev): %v: %s", err, out)
	}
	return bin
}

// mmdbBatchDumps returns libmaxminddb's dump for every address ("" for a
// miss), split over two processes (the machine has two cores).
func mmdbBatchDumps(t *testing.T, bin, file string, addrs []netip.Addr) []string {
	t.Helper()
	out := make([]string, len(addrs))
	const workers = 2
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := len(addrs)*w/workers, len(addrs)*(w+1)/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = mmdbBatchRun(bin, file, addrs[lo:hi], out[lo:hi])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("libmaxminddb %s: %v", file, err)
		}
	}
	return out
}

func mmdbBatchRun(bin, file string, addrs []netip.Addr, out []string) error {
	cmd := exec.Command(bin, file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		w := bufio.NewWriter(stdin)
		for _, a := range addrs {
			fmt.Fprintln(w, a)
		}
		w.Flush()
		stdin.Close()
	}()
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur strings.Builder
	n := 0
	var perr error
	for sc.Scan() {
		l := sc.Text()
		if l != "\x1e" {
			cur.WriteString(l)
			cur.WriteByte('\n')
			continue
		}
		d := cur.String()
		cur.Reset()
		switch {
		case n >= len(addrs):
			perr = fmt.Errorf("more answers than addresses")
		case strings.HasPrefix(d, "ERROR"):
			perr = fmt.Errorf("%s: %s", addrs[n], strings.TrimSpace(d))
		case d == "NOTFOUND\n":
			out[n] = ""
		default:
			out[n] = d
		}
		n++
		if perr != nil {
			break
		}
	}
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%v: %s", err, stderr.String())
	}
	if perr != nil {
		return perr
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if n != len(addrs) {
		return fmt.Errorf("%d answers for %d addresses", n, len(addrs))
	}
	return nil
}

// mmdbBatchAll parses the batch dumps with mmdblookup's parser (nil for a
// miss). Each distinct dump is parsed once: the parser allocates a 1 MiB
// line buffer per call, and most addresses share their record.
func mmdbBatchAll(t *testing.T, bin, file string, addrs []netip.Addr) []map[string]any {
	t.Helper()
	dumps := mmdbBatchDumps(t, bin, file, addrs)
	out := make([]map[string]any, len(addrs))
	parsed := map[string]map[string]any{}
	for i, d := range dumps {
		if d == "" {
			continue
		}
		if m, ok := parsed[d]; ok {
			out[i] = m
			continue
		}
		v, err := parseMMDBLookup(d)
		if err != nil {
			t.Fatalf("%s %s: %v", file, addrs[i], err)
		}
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s %s: top-level value is %T, not a map", file, addrs[i], v)
		}
		parsed[d] = m
		out[i] = m
	}
	return out
}

// mmdb100kFiles are the databases with geo or ASN fields, with the layout
// contract of each.
var mmdb100kFiles = []struct {
	path   string
	expect func(map[string]any) want
}{
	{"maxmind-test/GeoIP2-City-Test.mmdb", expectGeoIP2},
	{"maxmind-test/GeoLite2-City-Test.mmdb", expectGeoIP2},
	{"maxmind-test/GeoIP2-Country-Test.mmdb", expectGeoIP2},
	{"maxmind-test/GeoLite2-Country-Test.mmdb", expectGeoIP2},
	{"maxmind-test/GeoLite2-ASN-Test.mmdb", expectGeoIP2},
	{"maxmind-test/GeoIP2-ISP-Test.mmdb", expectGeoIP2},
	{"real/iptoasn-country.mmdb", expectFlat},
}

// TestMMDBBatchEqualsMMDBLookup: the batch program's dumps are exactly what
// mmdblookup prints (modulo surrounding blank lines) for a seeded sample of
// addresses of every database, hits and misses, so the 100,000-address test
// below is a comparison with mmdblookup.
func TestMMDBBatchEqualsMMDBLookup(t *testing.T) {
	tool := testenv.Tool(t, "mmdblookup")
	bin := mmdbBatch(t)
	for i, f := range mmdb100kFiles {
		t.Run(filepath.Base(f.path), func(t *testing.T) {
			path := filepath.Join(geoipData(t), f.path)
			r, err := maxminddb.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, addrs := testAddrs(t, r, 60, uint64(500+i))
			dumps := mmdbBatchDumps(t, bin, path, addrs)
			hits := 0
			for j, a := range addrs {
				cmd := exec.Command(tool, "--file", path, "--ip", a.String())
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				if strings.Contains(stderr.String(), "Could not find an entry") {
					if dumps[j] != "" {
						t.Errorf("%s: mmdblookup finds no entry, batch printed %q", a, dumps[j])
					}
					continue
				}
				if err != nil {
					t.Fatalf("mmdblookup %s: %v: %s", a, err, stderr.String())
				}
				hits++
				if got, exp := strings.TrimSpace(dumps[j]), strings.TrimSpace(stdout.String()); got != exp {
					t.Errorf("%s: batch dump differs from mmdblookup's:\n%s\n--- mmdblookup:\n%s", a, got, exp)
				}
			}
			if hits < len(addrs)/4 {
				t.Fatalf("only %d of %d sample addresses found", hits, len(addrs))
			}
		})
	}
}

// TestMatchesMMDBLookup100k compares the pipeline's answers (country, city,
// coordinates, ASN, organisation) with libmaxminddb's, through the batch
// program above (mmdblookup's own library calls), for 100,000 seeded random
// addresses per database: half inside random networks of the file, a
// quarter uniform IPv4, a quarter uniform IPv6.
func TestMatchesMMDBLookup100k(t *testing.T) {
	bin := mmdbBatch(t)
	for i, f := range mmdb100kFiles {
		t.Run(filepath.Base(f.path), func(t *testing.T) {
			path := filepath.Join(geoipData(t), f.path)
			db := openFiles(t, path)
			r, err := maxminddb.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			_, addrs := testAddrs(t, r, 100_000, uint64(1000+i))
			r.Close()
			// A few fixed addresses outside every network and in both
			// families, so misses are compared too.
			addrs = append(addrs, netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("255.255.255.255"),
				netip.MustParseAddr("::"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
			rand.New(rand.NewPCG(uint64(i), 3)).Shuffle(len(addrs), func(a, b int) { addrs[a], addrs[b] = addrs[b], addrs[a] })
			ref := mmdbBatchAll(t, bin, path, addrs)
			bad, nonEmpty, v6 := 0, 0, 0
			for j, a := range addrs {
				exp := f.expect(ref[j])
				if exp != (want{}) {
					nonEmpty++
					if !a.Is4() {
						v6++
					}
				}
				if got := gotOf(db.lookupRaw(a)); !sameAnswer(got, exp, mmdblookupCoordTol) {
					if bad++; bad <= 10 {
						t.Errorf("%s: got %v, libmaxminddb says %v", a, got, exp)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d addresses differ", bad, len(addrs))
			}
			if nonEmpty < len(addrs)/10 || v6 == 0 {
				t.Fatalf("only %d of %d reference answers carry data (%d IPv6); the test would prove little", nonEmpty, len(addrs), v6)
			}
			t.Logf("%d addresses, %d with data (%d IPv6)", len(addrs), nonEmpty, v6)
		})
	}
}
