package etcdstore_test

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/xenblk/xenblk/internal/etcdtest"
	"github.com/xenblk/xenblk/scsi"
	"github.com/xenblk/xenblk/scsi/pr"
)

// prInput is one PR command of a history: who sent it and its bytes.
type prInput struct {
	nexus scsi.Nexus
	cdb   [10]byte
	param []byte // PR OUT's parameter list; nil for PR IN
	what  string // for failure reports
}

// prOutput is what the unit answered: status, sense, PR IN's data.
// unknown: the store did not answer in time (LOGICAL UNIT
// COMMUNICATION FAILURE), so a change may or may not have been stored.
type prOutput struct {
	status  byte
	sense   scsi.Code
	data    []byte
	unknown bool
}

// prModel is pr.State as porcupine's sequential model: a PR OUT is
// State.Out on a copy, kept only when GOOD (as pr.Unit keeps it); a PR IN
// is State.In, which changes nothing. A command the unit refused with
// INTERNAL TARGET FAILURE (its retries ran out against other hosts'
// changes, every swap refused) had no effect and matches any state. A
// command whose outcome is unknown never returns (its Return is the end
// of time): it takes effect wherever porcupine places it, and placed
// last it is as if it never happened.
var prModel = porcupine.Model{
	Init: func() any { return pr.State{} },
	Step: func(state, input, output any) (bool, any) {
		s := state.(pr.State)
		in, out := input.(prInput), output.(prOutput)
		if out.status == scsi.StatusCheckCondition && out.sense == scsi.InternalTargetFailure {
			return true, s
		}
		next := s.Clone()
		var o pr.Outcome
		if in.param == nil {
			o = next.In(in.nexus, in.cdb[:])
		} else {
			o = next.Out(in.nexus, in.cdb[:], in.param)
		}
		if out.unknown {
			if in.param != nil && o.Status == scsi.StatusGood {
				return true, next
			}
			return true, s
		}
		if o.Status != out.status || (o.Status == scsi.StatusCheckCondition && o.Sense != out.sense) {
			return false, s
		}
		if in.param == nil {
			return bytes.Equal(o.Data, out.data), s
		}
		if o.Status != scsi.StatusGood {
			return true, s
		}
		return true, next
	},
	Equal: func(a, b any) bool { return bytes.Equal(encode(a.(pr.State)), encode(b.(pr.State))) },
	Hash: func(s any) uint64 {
		h := fnv.New64a()
		h.Write(encode(s.(pr.State)))
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(prInput), output.(prOutput)
		return fmt.Sprintf("%s -> %#x %v %x", in.what, out.status, out.sense, out.data)
	},
}

func encode(s pr.State) []byte {
	b, err := pr.Encode(s)
	if err != nil {
		panic(err)
	}
	return b
}

// randomCommand is one of the PR commands a cluster sends, from nexus me
// (index i, key i+1), naming the other nexuses' keys at random.
func randomCommand(r *rand.Rand, me scsi.Nexus, i, nexuses int) prInput {
	mine := uint64(i + 1)
	other := uint64(r.IntN(nexuses) + 1)
	types := []pr.Type{pr.TypeWriteExclusive, pr.TypeExclusiveAccess, pr.TypeWriteExclusiveRegOnly, pr.TypeExclusiveAccessAllRegs}
	typ := types[r.IntN(len(types))]
	out := func(a pr.OutAction, t pr.Type, p pr.OutParams, what string) prInput {
		param := p.Append(nil, a)
		c := pr.OutCommand{Action: a, Type: t, ParamLen: uint32(len(param))}
		return prInput{nexus: me, cdb: c.CDB(), param: param, what: fmt.Sprintf("n%d %s", i, what)}
	}
	switch k := r.IntN(10); k {
	case 0, 1:
		return out(pr.OutRegisterAndIgnore, 0, pr.OutParams{SAKey: mine}, "register")
	case 2:
		return out(pr.OutRegisterAndIgnore, 0, pr.OutParams{}, "unregister")
	case 3:
		return out(pr.OutReserve, typ, pr.OutParams{Key: mine}, "reserve "+typ.Abbrev())
	case 4:
		return out(pr.OutRelease, typ, pr.OutParams{Key: mine}, "release "+typ.Abbrev())
	case 5:
		return out(pr.OutPreempt, typ, pr.OutParams{Key: mine, SAKey: other}, fmt.Sprintf("preempt %d %s", other, typ.Abbrev()))
	case 6:
		return out(pr.OutClear, 0, pr.OutParams{Key: mine}, "clear")
	default:
		action := []pr.InAction{pr.InReadKeys, pr.InReadReservation, pr.InReadFullStatus}[k-7]
		return prInput{nexus: me, cdb: pr.InCommand{Action: action, AllocLen: 4096}.CDB(), what: fmt.Sprintf("n%d %s", i, action)}
	}
}

// runHistory sends ops random PR commands from each of nexuses nexuses
// at once, nexus i through units[i%len(units)], and returns the history.
// midway, when set, runs once when half the commands have been sent
// (a fault), and then commands may fail with an unknown outcome;
// without it every command must get an answer.
func runHistory(t *testing.T, seed uint64, units []*pr.Unit, nexuses, ops int, midway func()) []porcupine.Operation {
	var mu sync.Mutex
	var history []porcupine.Operation
	var wg sync.WaitGroup
	var sent atomic.Int64
	epoch := time.Now()
	for i := range nexuses {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			u := units[i%len(units)]
			me := scsi.Nexus{Dom: uint16(i + 1), Device: fmt.Sprintf("host%d/xvda", i%len(units))}
			for range ops {
				if sent.Add(1) == int64(nexuses*ops/2) && midway != nil {
					midway()
				}
				in := randomCommand(r, me, i, nexuses)
				cmd := &scsi.Command{CDB: in.cdb[:], Dir: scsi.DirToDevice, Data: in.param}
				if in.param == nil {
					cmd.Dir, cmd.Data = scsi.DirFromDevice, make([]byte, 4096)
				}
				var res scsi.Result
				call := time.Since(epoch).Nanoseconds()
				u.Execute(me, cmd, &res, false)
				ret := time.Since(epoch).Nanoseconds()
				out := prOutput{status: res.Status}
				if res.Status == scsi.StatusCheckCondition {
					s, _, _ := scsi.ParseSense(res.SenseBytes())
					out.sense = s.Code
				}
				if in.param == nil && res.Status == scsi.StatusGood {
					out.data = append([]byte(nil), cmd.Data[:len(cmd.Data)-res.Resid]...)
				}
				if out.sense == scsi.LogicalUnitCommunicationFailure {
					if midway == nil {
						t.Errorf("%s: the store did not answer in time (no fault was injected)", in.what)
					}
					out = prOutput{unknown: true}
					ret = math.MaxInt64
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: i, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return history
}

// TestLinearizable: PR commands from six nexuses on two hosts (two
// units, each on its own etcd client) of one logical unit, at once and
// at random, form a history porcupine finds linearizable against pr.State.
// The same commands through two units that do not share a store (each
// host its own memory) are caught as not linearizable: the check can fail.
func TestLinearizable(t *testing.T) {
	c := etcdtest.Start(t, 3)
	quiet := slog.New(slog.DiscardHandler)
	const nexuses, ops = 6, 25
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			units := twoHosts(t, c)
			history := runHistory(t, seed, units, nexuses, ops, nil)
			checkLinearizable(t, history)
			var conflicts uint64
			for _, u := range units {
				conflicts += u.Stats().Conflicts
			}
			t.Logf("%d operations, %d CAS conflicts between the hosts", len(history), conflicts)
		})
	}
	t.Run("unshared stores are caught", func(t *testing.T) {
		var units []*pr.Unit
		for range 2 {
			u, err := pr.Open(pr.NewMemoryStore(), "/images/cluster.img", quiet)
			if err != nil {
				t.Fatal(err)
			}
			units = append(units, u)
		}
		history := runHistory(t, 99, units, nexuses, ops, nil)
		if res := porcupine.CheckOperationsTimeout(prModel, history, time.Minute); res != porcupine.Illegal {
			t.Fatalf("two hosts with stores of their own: porcupine says %v; want Illegal", res)
		}
	})
}

// TestLinearizableWithLeaderKilled: the same random history, the etcd
// leader stopped halfway (a new one is elected; the clients move to the
// members left). Commands in flight then may fail with an unknown
// outcome; the history stays linearizable.
func TestLinearizableWithLeaderKilled(t *testing.T) {
	c := etcdtest.Start(t, 3)
	units := twoHosts(t, c)
	killed := -1
	history := runHistory(t, 7, units, 6, 25, func() {
		if killed = c.Leader(); killed < 0 {
			killed = 0
		}
		c.Kill(killed)
	})
	if killed < 0 {
		t.Fatal("the fault never ran")
	}
	if err := c.Restart(killed); err != nil {
		t.Fatal(err)
	}
	unknown := 0
	for _, op := range history {
		if op.Output.(prOutput).unknown {
			unknown++
		}
	}
	checkLinearizable(t, history)
	t.Logf("%d operations, member %d (the leader) stopped halfway, %d outcomes unknown", len(history), killed, unknown)
}

// twoHosts opens one logical unit twice, each on an etcd client of its
// own (two hosts), under a prefix of the test's.
func twoHosts(t *testing.T, c *etcdtest.Cluster) []*pr.Unit {
	prefix := newPrefix()
	var units []*pr.Unit
	for range 2 {
		u, err := pr.Open(open(t, c, prefix), "/images/cluster.img", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		units = append(units, u)
	}
	return units
}

func checkLinearizable(t *testing.T, history []porcupine.Operation) {
	t.Helper()
	res, info := porcupine.CheckOperationsVerbose(prModel, history, time.Minute)
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Fatalf("porcupine gave up within its minute on %d operations", len(history))
	default:
		t.Fatalf("history of %d operations is not linearizable:\n%s", len(history), describe(info))
	}
}

// describe lists the longest linearizable prefix porcupine found, for a
// failure report.
func describe(info porcupine.LinearizationInfo) string {
	var b bytes.Buffer
	for _, partial := range info.PartialLinearizationsOperations() {
		for _, seq := range partial {
			for _, op := range seq {
				fmt.Fprintf(&b, "  %s\n", prModel.DescribeOperation(op.Input, op.Output))
			}
			break
		}
	}
	return b.String()
}
