package ident

// sampleRuns calls run for every maximal run of each class in mask that is
// at least minRun long, class by class and in position order within a
// class (the order hits are recorded in decides which of two equal hits is
// reported).
//
// One pass per class, sampling every minRun-th byte: a run at least minRun
// long must contain a sampled position, so bytes outside qualifying runs
// are mostly never looked at (a Boyer-Moore-style skip). It was the
// scanner's finder until maskRuns (masks.go), which beats it by ~1.5x on
// headers and JSON even with the masks built in pure Go (a byte-at-a-time
// mask build had lost to it); it remains for classes whose minRun is too
// long for the masks and as a finder the tests compare with the others.
func (s *Scanner) sampleRuns(data []byte, layer int, mask uint8) {
	for c := 0; c < numRunClasses; c++ {
		if s.idx.minRun[c] == 0 || mask&(1<<c) == 0 {
			continue
		}
		s.sampleClass(data, c, layer)
	}
}

// sampleClass is sampleRuns for one class.
func (s *Scanner) sampleClass(data []byte, c, layer int) {
	n := len(data)
	L := s.idx.minRun[c]
	bit := uint8(1) << c
	for p := L - 1; p < n; {
		if lut[data[p]]&bit == 0 {
			p += L
			continue
		}
		e := p + 1
		for e < n && lut[data[e]]&bit != 0 {
			e++
		}
		// The run [st, e) is long enough iff st <= e-L, which needs
		// data[e-L] in the class: most short runs (JSON keys, words)
		// are dismissed by that one byte without walking back.
		if q := e - L; q >= 0 && lut[data[q]]&bit != 0 {
			st := p
			for st > 0 && lut[data[st-1]]&bit != 0 {
				st--
			}
			if e-st >= L {
				s.run(data, c, st, e, layer)
			}
		}
		p = e + L
	}
	s.windowRuns(data, c, layer)
}

// allRuns is the reference for sampleRuns and for minRun: it calls run for
// every maximal run of every class in mask that has anything indexed,
// whatever its length, found byte by byte (run ignores runs too short to
// hold an indexed length, a window or a base64 layer).
func (s *Scanner) allRuns(data []byte, layer int, mask uint8) {
	for c := 0; c < numRunClasses; c++ {
		if s.idx.minRun[c] == 0 || mask&(1<<c) == 0 {
			continue
		}
		bit := uint8(1) << c
		for i := 0; i < len(data); {
			if lut[data[i]]&bit == 0 {
				i++
				continue
			}
			j := i
			for j < len(data) && lut[data[j]]&bit != 0 {
				j++
			}
			s.run(data, c, i, j, layer)
			i = j
		}
	}
}
