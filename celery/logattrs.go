package celery

import "log/slog"

// logFor returns the worker's logger with the attributes of req's delivery
// (queue and delivery_tag; the records name the task and its id), so every
// record about a task can be joined with its message, the broker's view
// and, through the task id (messaging.message.id), its trace spans.
func (w *Worker) logFor(req *request) *slog.Logger {
	if req == nil || req.msg == nil {
		return w.log
	}
	return w.log.With(slog.String("queue", req.msg.DeliveryInfo.Queue), slog.String("delivery_tag", req.msg.DeliveryTag))
}
