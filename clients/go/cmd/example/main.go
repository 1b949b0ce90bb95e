// Command example is the Go client example (docs/clients.md): it ingests a batch, reads
// recommendations and handles a rejected batch, printing one JSON line per step, and exits
// 1 on any other outcome.
//
//	MAGNETAR_ADDRESS=127.0.0.1:50051 MAGNETAR_INGEST_KEY=... MAGNETAR_READ_KEY=... \
//	  MAGNETAR_USER=u-42 go run ./cmd/example
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	magnetarv1 "magnetar/clients/go/gen/magnetar/v1"
)

// withKey returns a context whose calls carry `authorization: Bearer <key>`.
func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

func eventID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func required(name string) (string, error) {
	value := os.Getenv(name)
	if value == "" {
		return "", fmt.Errorf("%s is not set", name)
	}
	return value, nil
}

func getenv(name, fallback string) string {
	if value := os.Getenv(name); value != "" {
		return value
	}
	return fallback
}

func emit(line map[string]any) {
	encoded, err := json.Marshal(line)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(encoded))
}

type fieldViolation struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

// describeFailure reads what a client acts on from a failed call's google.rpc.Status: the
// code, ErrorInfo's reason and BadRequest's field violations.
func describeFailure(err error) map[string]any {
	st := status.Convert(err)
	line := map[string]any{"step": "rejection", "code": code.Code(st.Code()).String()}
	violations := []fieldViolation{}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			line["reason"] = d.GetReason()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				violations = append(violations, fieldViolation{v.GetField(), v.GetDescription()})
			}
		}
	}
	line["violations"] = violations
	return line
}

func run() error {
	ingestKey, err := required("MAGNETAR_INGEST_KEY")
	if err != nil {
		return err
	}
	readKey, err := required("MAGNETAR_READ_KEY")
	if err != nil {
		return err
	}
	user := getenv("MAGNETAR_USER", "go-user")
	conn, err := grpc.NewClient(
		getenv("MAGNETAR_ADDRESS", "127.0.0.1:50051"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		return err
	}
	defer conn.Close()
	events := magnetarv1.NewEventServiceClient(conn)
	personalization := magnetarv1.NewPersonalizationServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// 1. A batch: a view, a cart and a purchase of one item.
	var batch []*magnetarv1.Event
	for _, kind := range []magnetarv1.EventType{
		magnetarv1.EventType_EVENT_TYPE_VIEW,
		magnetarv1.EventType_EVENT_TYPE_ADD_TO_CART,
		magnetarv1.EventType_EVENT_TYPE_PURCHASE,
	} {
		event := &magnetarv1.Event{
			EventId:    eventID(),
			UserId:     user,
			Type:       kind,
			ItemId:     "tent",
			OccurredAt: timestamppb.Now(),
			Context:    &magnetarv1.EventContext{UserAgent: "magnetar-go-example"},
		}
		if kind != magnetarv1.EventType_EVENT_TYPE_VIEW {
			event.Value = 129.5
		}
		batch = append(batch, event)
	}
	ingested, err := events.Ingest(withKey(ctx, ingestKey), &magnetarv1.IngestRequest{Events: batch})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	emit(map[string]any{
		"step":     "ingest",
		"accepted": ingested.GetAcceptedCount(),
		"rejected": len(ingested.GetRejectedEvents()),
	})

	// 2. Recommendations for the same user, leaving out what they already bought.
	recommended, err := personalization.Recommend(
		withKey(ctx, readKey), &magnetarv1.RecommendRequest{
			UserId: user,
			K:      3,
			Filter: &magnetarv1.RecommendationFilter{ExcludePurchased: true},
		})
	if err != nil {
		return fmt.Errorf("recommend: %w", err)
	}
	items := []map[string]any{}
	for _, item := range recommended.GetItems() {
		items = append(items, map[string]any{
			"itemId": item.GetItemId(),
			"reason": item.GetReason().GetKind().String(),
			"text":   item.GetReason().GetText(),
		})
	}
	emit(map[string]any{"step": "recommend", "coldStart": recommended.GetColdStart(), "items": items})

	// 3. A rejection: with AllOrNothing, an event without occurred_at fails the batch with
	// INVALID_ARGUMENT, and the status details name the field to fix.
	invalid := []*magnetarv1.Event{
		{EventId: eventID(), UserId: user, Type: magnetarv1.EventType_EVENT_TYPE_VIEW,
			ItemId: "tent", OccurredAt: timestamppb.Now()},
		{EventId: eventID(), UserId: user, Type: magnetarv1.EventType_EVENT_TYPE_VIEW,
			ItemId: "tent"},
	}
	_, err = events.Ingest(withKey(ctx, ingestKey),
		&magnetarv1.IngestRequest{Events: invalid, AllOrNothing: true})
	if err == nil {
		return errors.New("an invalid all-or-nothing batch was accepted")
	}
	if _, ok := status.FromError(err); !ok {
		return err
	}
	emit(describeFailure(err))
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
