package celery

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kombu-go/kombu/internal/pyjson"
)

// DefaultGroupKeyPrefix is the prefix of Celery's group keys
// (backend.group_keyprefix): celery-taskset-meta-<group id> holds a saved
// GroupResult, and the chord counters live under the same name with the
// suffixes .j (the parts' results), .s (the header's size) and .t (tasks
// added to the header later).
const DefaultGroupKeyPrefix = "celery-taskset-meta-"

// ChordSizeWait is how long a chord part waits for its header's size to be
// written before the worker reports the chord as stuck (the sender died
// between sending header tasks and the last one, say). Celery itself never
// reports it; the chord would hang silently.
var ChordSizeWait = 30 * time.Second

// GroupKey returns the key of a group's saved result, followed by suffix
// (".j", ".s", ".t" for a chord's counters).
func (b *Backend) GroupKey(groupID, suffix string) string {
	return strings.TrimSuffix(b.prefix, DefaultTaskKeyPrefix) + DefaultGroupKeyPrefix + groupID + suffix
}

// SetChordSize records the size of a chord's header, as Celery's Redis
// backend set_chord_size does (SETEX with the result expiry, and PUBLISH).
func (b *Backend) SetChordSize(ctx context.Context, groupID string, size int) error {
	err := b.set(ctx, b.GroupKey(groupID, ".s"), strconv.Itoa(size))
	if err != nil {
		return fmt.Errorf("celery: set chord size of %s: %w", groupID, err)
	}
	return nil
}

// chordPart is a header task of a chord returning.
type chordPart struct {
	id, groupID string
	groupIndex  *int
	chord       any // the body signature
}

func (r *request) chordPart() (chordPart, bool) {
	tm := r.tm
	if tm.Chord == nil || tm.GroupID == "" || tm.ID == "" {
		return chordPart{}, false
	}
	return chordPart{id: tm.ID, groupID: tm.GroupID, groupIndex: tm.GroupIndex, chord: tm.Chord}, true
}

// chordPartReturn is Celery's RedisBackend.on_chord_part_return: the
// part's [1, id, state, result] goes into the .j sorted set scored by its
// group index, in one MULTI with the count, the .t and .s counters and the
// expiries; the part that completes the header sends the body with the
// results in header order, or, if a part failed or was revoked, stores the
// body's result as a ChordError and fires the body's errbacks; the keys are
// deleted after.
func (w *Worker) chordPartReturn(ctx context.Context, p chordPart, state State, result any) {
	b := w.backend
	jkey, tkey, skey := b.GroupKey(p.groupID, ".j"), b.GroupKey(p.groupID, ".t"), b.GroupKey(p.groupID, ".s")
	encoded, err := pyjson.Marshal([]any{1, p.id, string(state), result})
	if err != nil {
		w.log.Error("celery: chord part result", "group", p.groupID, "id", p.id, "error", err)
		w.onError(err)
		return
	}
	score := "+inf"
	if p.groupIndex != nil {
		score = strconv.Itoa(*p.groupIndex)
	}
	var count *redis.IntCmd
	var diff, size *redis.StringCmd
	_, err = b.client.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Do(ctx, "zadd", jkey, score, encoded)
		count = pipe.ZCount(ctx, jkey, "-inf", "+inf")
		diff = pipe.Get(ctx, tkey)
		size = pipe.Get(ctx, skey)
		if b.expires > 0 {
			sec := int64(b.expires / time.Second)
			pipe.Expire(ctx, jkey, time.Duration(sec)*time.Second)
			pipe.Expire(ctx, tkey, time.Duration(sec)*time.Second)
			pipe.Expire(ctx, skey, time.Duration(sec)*time.Second)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		w.log.Error("celery: chord part return", "group", p.groupID, "id", p.id, "error", err)
		w.onError(fmt.Errorf("celery: chord %s part %s: %w", p.groupID, p.id, err))
		return
	}
	totalDiff, _ := strconv.Atoi(diff.Val())
	sizeVal := size.Val()
	if sizeVal == "" {
		w.watchChordSize(p.groupID, jkey, skey)
		return
	}
	n, err := strconv.Atoi(sizeVal)
	if err != nil {
		w.log.Error("celery: chord size is not a number", "group", p.groupID, "size", sizeVal)
		return
	}
	if int(count.Val()) != n+totalDiff {
		return
	}
	body, err := sigFromAny(p.chord)
	if err != nil {
		w.log.Error("celery: chord body", "group", p.groupID, "error", err)
		w.onError(err)
		w.deleteChordKeys(ctx, jkey, tkey, skey)
		return
	}
	defer w.deleteChordKeys(ctx, jkey, tkey, skey)
	// A header holding groups was saved by apply_chord as a GroupResult:
	// join it, so the body gets the nested results as Celery gives them.
	if saved, err := b.RestoreGroup(ctx, p.groupID); err == nil {
		jctx, cancel := context.WithTimeout(ctx, 3*time.Second) // result_chord_join_timeout
		results, err := joinNested(jctx, saved)
		cancel()
		if err != nil {
			w.chordError(ctx, body, chordError(fmt.Sprintf("Join error: %s", errRepr(err))))
			return
		}
		if _, err := w.client.applySignature(ctx, body, []any{results}, applyOpts{}); err != nil {
			w.chordError(ctx, body, chordError(fmt.Sprintf("Callback error: %v", err)))
		}
		return
	}
	parts, err := b.client.ZRange(ctx, jkey, 0, -1).Result()
	if err != nil {
		w.chordError(ctx, body, chordError(fmt.Sprintf("Join error: %v", err)))
		return
	}
	results := make([]any, 0, len(parts))
	for _, raw := range parts {
		v, err := pyjson.Unmarshal([]byte(raw))
		tup, _ := v.([]any)
		if err != nil || len(tup) != 4 {
			w.chordError(ctx, body, chordError(fmt.Sprintf("Join error: bad chord part %q", raw)))
			return
		}
		st, _ := tup[2].(string)
		if State(st) == StateFailure || State(st) == StateRevoked {
			w.chordError(ctx, body, chordError(fmt.Sprintf("Dependency %v raised %s", tup[1], pyExcRepr(tup[3]))))
			return
		}
		results = append(results, tup[3])
	}
	// callback.delay(resl)
	if _, err := w.client.applySignature(ctx, body, []any{results}, applyOpts{}); err != nil {
		w.log.Error("celery: send chord body", "group", p.groupID, "body", body.Task, "error", err)
		w.chordError(ctx, body, chordError(fmt.Sprintf("Callback error: %v", err)))
	}
}

// chordError is Celery's chord_error_from_stack: the body's errbacks are
// sent with the body's id, and the body's result is stored as the failure.
func (w *Worker) chordError(ctx context.Context, body Signature, exc *TaskError) {
	id, _ := body.Options["task_id"].(string)
	errbacks, err := signaturesFrom(body.Options["link_error"])
	if err != nil {
		w.log.Error("celery: chord body link_error", "body", body.Task, "error", err)
	}
	for _, eb := range errbacks {
		if _, err := w.client.applySignature(ctx, eb, []any{id}, applyOpts{parentID: id}); err != nil {
			w.log.Error("celery: send chord errback", "body", body.Task, "errback", eb.Task, "error", err)
			w.onError(err)
		}
	}
	w.log.Error("celery: chord failed", "body", body.Task, "id", id, "error", exc.Error())
	if id == "" {
		return
	}
	tb := fmt.Sprintf("Traceback (most recent call last):\n  chord body %s[%s]\ncelery.exceptions.ChordError: %s\n", body.Task, id, exc.Message())
	if err := w.backend.Store(ctx, &ResultMeta{TaskID: id, Status: StateFailure, Result: exc.exceptionDict(), Traceback: tb}); err != nil {
		w.log.Error("celery: store chord failure", "id", id, "error", err)
		w.onError(err)
	}
}

func (w *Worker) deleteChordKeys(ctx context.Context, keys ...string) {
	if err := w.backend.client.Del(ctx, keys...).Err(); err != nil {
		w.log.Warn("celery: delete chord keys", "keys", keys, "error", err)
	}
}

// watchChordSize reports a chord whose header size is still unknown
// ChordSizeWait after one of its parts returned: Celery would wait for it
// forever without a word.
func (w *Worker) watchChordSize(groupID, jkey, skey string) {
	wait := ChordSizeWait
	if wait <= 0 {
		return
	}
	time.AfterFunc(wait, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n, err := w.backend.client.Exists(ctx, skey, jkey).Result()
		if err != nil || n != 1 { // size arrived (2), or the chord finished and its keys are gone (0)
			return
		}
		if ok, _ := w.backend.client.Exists(ctx, jkey).Result(); ok == 1 {
			err := fmt.Errorf("%w: chord %s: parts returned but its header size (%s) was never set after %s; the body will not run",
				ErrInvalidCanvas, groupID, skey, wait)
			w.log.Error("celery: chord stuck", "group", groupID, "error", err)
			w.onError(err)
		}
	})
}

// joinNested is GroupResult.join for a saved chord header: each member's
// result in order, a nested group as the list of its members' results.
func joinNested(ctx context.Context, g *GroupResult) ([]any, error) {
	out := make([]any, len(g.Results))
	for i, r := range g.Results {
		switch x := r.(type) {
		case *GroupResult:
			v, err := joinNested(ctx, x)
			if err != nil {
				return nil, err
			}
			out[i] = v
		default:
			v, err := r.Get(ctx)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
	}
	return out, nil
}

// errRepr is repr() of the exception a join raised.
func errRepr(err error) string {
	var te *TaskError
	if errors.As(err, &te) {
		return pyExcRepr(normalizeExc(te))
	}
	return err.Error()
}
