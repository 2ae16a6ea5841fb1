// main_test.go checks, without a broker, what the SDK's Kafka binding writes
// in each mode and that parse reads it back, as well as orderflow's binary
// records and the Python SDK's structured ones.
package main

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/IBM/sarama"
)

// fakeProducer accepts every message; the SyncProducer methods send does not
// call stay nil.
type fakeProducer struct {
	sarama.SyncProducer
	sent []*sarama.ProducerMessage
}

func (f *fakeProducer) SendMessage(m *sarama.ProducerMessage) (int32, int64, error) {
	f.sent = append(f.sent, m)
	return 0, int64(len(f.sent) - 1), nil
}

func (f *fakeProducer) Close() error { return nil }

// consumed turns a produced message into the record a consumer gets.
func consumed(t *testing.T, m *sarama.ProducerMessage) *sarama.ConsumerMessage {
	t.Helper()
	cm := &sarama.ConsumerMessage{Topic: m.Topic}
	var err error
	if m.Key != nil {
		if cm.Key, err = m.Key.Encode(); err != nil {
			t.Fatal(err)
		}
	}
	if cm.Value, err = m.Value.Encode(); err != nil {
		t.Fatal(err)
	}
	for i := range m.Headers {
		cm.Headers = append(cm.Headers, &m.Headers[i])
	}
	return cm
}

const data = `{"customer_id":"c-1","items":[{"product_id":"p-1","quantity":2}],"currency":"EUR"}`

func TestSendAndParse(t *testing.T) {
	for _, tc := range []struct {
		mode, contentType, encoding string
		ceHeaders                   bool
		valueHas                    string
	}{
		{"binary", "application/json", "binary", true, `"customer_id"`},
		{"structured", "application/cloudevents+json", "structured", false, `"data":{"customer_id"`},
		{"structured-bytes", "application/cloudevents+json", "structured", false,
			`"data_base64":"` + base64.StdEncoding.EncodeToString([]byte(data)) + `"`},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			p := &fakeProducer{}
			out, err := send(p, "t", tc.mode, "id-"+tc.mode, "order.created", "key-1", data)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.sent) != 1 {
				t.Fatalf("sent %d messages", len(p.sent))
			}
			if out.Key == nil || *out.Key != "key-1" {
				t.Errorf("key %v, want key-1", out.Key)
			}
			if out.Headers["content-type"] != tc.contentType {
				t.Errorf("content-type %q, want %q", out.Headers["content-type"], tc.contentType)
			}
			if _, ok := out.Headers["ce_specversion"]; ok != tc.ceHeaders {
				t.Errorf("ce_specversion header present: %v, want %v (headers %v)", ok, tc.ceHeaders, out.Headers)
			}
			value, _ := p.sent[0].Value.Encode()
			if !strings.Contains(string(value), tc.valueHas) {
				t.Errorf("value %s does not contain %s", value, tc.valueHas)
			}

			got, err := parse(consumed(t, p.sent[0]))
			if err != nil {
				t.Fatal(err)
			}
			if got.Encoding != tc.encoding || got.ID != "id-"+tc.mode || got.Type != "order.created" ||
				got.Source != "sdk/go" || got.Key == nil || *got.Key != "key-1" || string(got.Data) != data {
				b, _ := json.Marshal(got)
				t.Errorf("parsed %s", b)
			}
		})
	}
}

func header(k, v string) *sarama.RecordHeader {
	return &sarama.RecordHeader{Key: []byte(k), Value: []byte(v)}
}

func TestParseOrderflowBinary(t *testing.T) {
	cm := &sarama.ConsumerMessage{
		Topic: "order.status",
		Key:   []byte("0b9d6f7e-0000-4000-8000-000000000001"),
		Value: []byte(`{"order_id":"0b9d6f7e-0000-4000-8000-000000000001","status":"CONFIRMED"}`),
		Headers: []*sarama.RecordHeader{
			header("ce_specversion", "1.0"), header("ce_id", "e-1"),
			header("ce_type", "order.status.changed"), header("ce_source", "orderflow/order-status"),
			header("ce_time", "2026-01-01T00:00:00.000Z"),
			header("ce_subject", "0b9d6f7e-0000-4000-8000-000000000001"),
			header("content-type", "application/json"),
		},
	}
	got, err := parse(cm)
	if err != nil {
		t.Fatal(err)
	}
	if got.Encoding != "binary" || got.Mode != "binary" || got.Subject == nil ||
		*got.Subject != string(cm.Key) || got.Source != "orderflow/order-status" ||
		string(got.Data) != string(cm.Value) {
		b, _ := json.Marshal(got)
		t.Errorf("parsed %s", b)
	}
}

// The Python SDK's structured mode: content-type application/json, no ce_
// headers. The binding sees no encoding; parse reads it as structured.
func TestParsePythonStructured(t *testing.T) {
	cm := &sarama.ConsumerMessage{
		Key: []byte("k"),
		Value: []byte(`{"specversion":"1.0","id":"x","type":"order.status.update","source":"sdk/python",` +
			`"datacontenttype":"application/json","partitionkey":"k","data":{"status":"PAID"}}`),
		Headers: []*sarama.RecordHeader{header("content-type", "application/json")},
	}
	got, err := parse(cm)
	if err != nil {
		t.Fatal(err)
	}
	if got.Encoding != "unknown" || got.Mode != "structured" || got.Source != "sdk/python" ||
		string(got.Data) != `{"status":"PAID"}` {
		b, _ := json.Marshal(got)
		t.Errorf("parsed %s", b)
	}
}

func TestParseRejectsNonEvent(t *testing.T) {
	if _, err := parse(&sarama.ConsumerMessage{Value: []byte(`{"a":1}`)}); err == nil {
		t.Error("a record that is no CloudEvent parsed")
	}
}
