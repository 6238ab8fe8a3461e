package bpf

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// slotArray is SLOT_ARRAY in c/flow.c: if_slots is indexed by ifindex modulo it.
const slotArray = 1024

// tcFilterPriority is the priority of our legacy TC filters, high enough
// (numerically) to run after filters installed by others at default priority.
const tcFilterPriority = 0xfe11

// attachment is one hook (ingress or egress) on one interface.
type attachment struct {
	ifname string
	detach func() error
}

// Attach hooks the ingress and egress programs to ifname and assigns the
// interface the next IfMask slot (the order of Attach calls: 0, 1, ...).
func (p *Probe) Attach(ifname string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("bpf: attach %s: probe closed", ifname)
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("bpf: attach %s: interface not found: %w", ifname, err)
	}
	if _, dup := p.slots[ifc.Index]; dup {
		return fmt.Errorf("bpf: attach %s: already attached", ifname)
	}
	slot := len(p.slots)
	if err := p.setSlot(ifc.Index, slot); err != nil {
		return fmt.Errorf("bpf: attach %s: %w", ifname, err)
	}

	mode := p.cfg.AttachMode
	var atts []attachment
	if mode == AttachAuto || mode == AttachTCX {
		atts, err = p.attachTCX(ifname, ifc.Index)
		if err != nil && mode == AttachAuto && errors.Is(err, ebpf.ErrNotSupported) {
			slog.Info("bpf: TCX not supported, falling back to clsact qdisc", "interface", ifname, "err", err)
			mode = AttachTC
		} else if err != nil {
			p.clearSlot(ifc.Index)
			return fmt.Errorf("bpf: attach %s (tcx): %w", ifname, err)
		} else {
			mode = AttachTCX
		}
	}
	if mode == AttachTC {
		atts, err = p.attachTC(ifname, ifc.Index)
		if err != nil {
			p.clearSlot(ifc.Index)
			return fmt.Errorf("bpf: attach %s (tc clsact): %w", ifname, err)
		}
	}
	p.attached = append(p.attached, atts...)
	p.names = append(p.names, ifname)
	slog.Info("bpf: attached", "interface", ifname, "ifindex", ifc.Index, "slot", slot, "mode", mode)
	return nil
}

// Interfaces returns the attached interface names by slot: element i is the
// interface of flow.DirStats.IfMask bit i.
func (p *Probe) Interfaces() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.names...)
}

// setSlot records ifindex -> slot in the kernel's if_slots array.
func (p *Probe) setSlot(ifindex, slot int) error {
	if slot >= maxSlots {
		return fmt.Errorf("at most %d interfaces can be attached", maxSlots)
	}
	idx := uint32(ifindex % slotArray)
	var cur flowIfSlot
	if err := p.objs.IfSlots.Lookup(idx, &cur); err != nil {
		return fmt.Errorf("read if_slots: %w", err)
	}
	if cur.Slot != 0 && cur.Ifindex != uint32(ifindex) {
		return fmt.Errorf("ifindex %d collides with attached ifindex %d (mod %d)", ifindex, cur.Ifindex, slotArray)
	}
	v := flowIfSlot{Ifindex: uint32(ifindex), Slot: uint32(slot) + 1}
	if err := p.objs.IfSlots.Put(idx, &v); err != nil {
		return fmt.Errorf("write if_slots: %w", err)
	}
	p.slots[ifindex] = slot
	return nil
}

func (p *Probe) clearSlot(ifindex int) {
	idx := uint32(ifindex % slotArray)
	_ = p.objs.IfSlots.Put(idx, &flowIfSlot{})
	delete(p.slots, ifindex)
}

func (p *Probe) attachTCX(ifname string, ifindex int) ([]attachment, error) {
	var out []attachment
	for _, h := range []struct {
		prog *ebpf.Program
		at   ebpf.AttachType
		name string
	}{
		{p.objs.ExfilIngress, ebpf.AttachTCXIngress, "ingress"},
		{p.objs.ExfilEgress, ebpf.AttachTCXEgress, "egress"},
	} {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: h.prog, Attach: h.at})
		if err != nil {
			for _, a := range out {
				_ = a.detach()
			}
			return nil, fmt.Errorf("%s: %w", h.name, err)
		}
		out = append(out, attachment{ifname: ifname, detach: func() error {
			if err := l.Close(); err != nil {
				return fmt.Errorf("bpf: detach tcx %s %s: %w", h.name, ifname, err)
			}
			return nil
		}})
	}
	return out, nil
}

// attachTC is the pre-6.6 path: a clsact qdisc with one direct-action BPF
// filter per direction. A qdisc we create is deleted again on detach; one
// that was already there is left alone (only our filters are removed).
func (p *Probe) attachTC(ifname string, ifindex int) ([]attachment, error) {
	// The handle's socket lives in the current network namespace, so
	// detaching later works from any thread.
	nh, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	lnk, err := nh.LinkByIndex(ifindex)
	if err != nil {
		nh.Close()
		return nil, fmt.Errorf("netlink link: %w", err)
	}
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: ifindex,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_CLSACT,
		},
		QdiscType: "clsact",
	}
	created := false
	if err := nh.QdiscAdd(qdisc); err == nil {
		created = true
	} else if !errors.Is(err, unix.EEXIST) {
		nh.Close()
		return nil, fmt.Errorf("add clsact qdisc: %w", err)
	}
	var filters []*netlink.BpfFilter
	cleanup := func() error {
		defer nh.Close()
		var errs []error
		for _, f := range filters {
			if err := nh.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("delete filter: %w", err))
			}
		}
		if created {
			if err := nh.QdiscDel(qdisc); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("delete clsact qdisc: %w", err))
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("bpf: detach tc %s: %w", ifname, errors.Join(errs...))
		}
		return nil
	}
	for _, h := range []struct {
		prog   *ebpf.Program
		parent uint32
		name   string
	}{
		{p.objs.ExfilIngress, netlink.HANDLE_MIN_INGRESS, "exfilwatch_ingress"},
		{p.objs.ExfilEgress, netlink.HANDLE_MIN_EGRESS, "exfilwatch_egress"},
	} {
		f := &netlink.BpfFilter{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: lnk.Attrs().Index,
				Parent:    h.parent,
				Handle:    1,
				Protocol:  unix.ETH_P_ALL,
				Priority:  tcFilterPriority,
			},
			Fd:           h.prog.FD(),
			Name:         h.name,
			DirectAction: true,
		}
		if err := nh.FilterReplace(f); err != nil {
			_ = cleanup()
			return nil, fmt.Errorf("add %s filter: %w", h.name, err)
		}
		filters = append(filters, f)
	}
	return []attachment{{ifname: ifname, detach: cleanup}}, nil
}
