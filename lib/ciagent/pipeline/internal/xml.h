// The XML of JUnit files, apart from what JUnit means: a small reader that
// reports elements and text to an XmlHandler, and escaping for the writer.
// No I/O: bytes in, events or bytes out.
//
// The reader takes XML 1.0 as JUnit writers produce it: elements,
// attributes, text, the predefined and numeric character references, CDATA,
// comments and processing instructions (the XML declaration among them). No
// DOCTYPE, hence no other entities. Input must be UTF-8. It does not recurse
// and refuses nesting deeper than 256 elements, so any input is safe.
//
// Example:
//   class CaseCounter : public XmlHandler { ... };
//   CaseCounter counter;
//   CIAGENT_RETURN_IF_ERROR(ReadXml(xml, &counter));
//
// Thread-safety: the functions keep no state; a handler is used by one
// ReadXml at a time.
#ifndef CIAGENT_PIPELINE_INTERNAL_XML_H_
#define CIAGENT_PIPELINE_INTERNAL_XML_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ciagent {

// An element's attributes in document order, references resolved.
using XmlAttributes = std::vector<std::pair<std::string, std::string>>;

// The value of attribute `name`, or nullptr.
const std::string* FindXmlAttribute(const XmlAttributes& attributes,
                                    absl::string_view name);

// Receives a document's content in order. `depth` counts the elements
// open around the event: 0 for the root's start and end.
class XmlHandler {
 public:
  virtual ~XmlHandler() = default;

  // A start tag, or an empty-element tag (then End follows at once). A
  // non-OK status stops the reading; ReadXml returns it with its line.
  virtual absl::Status Start(absl::string_view name,
                             const XmlAttributes& attributes, size_t depth) = 0;
  // Character data, references resolved and line ends made "\n"; the text
  // of one element may come in several pieces (around comments, CDATA).
  virtual void Text(absl::string_view text, size_t depth) = 0;
  virtual void End(size_t depth) = 0;
};

// Reads `xml` (a leading byte-order mark is skipped), reporting to
// `handler`. kInvalidArgument, "<problem> at line <n>", if it is not
// well-formed in the subset above or the handler refuses an element (its
// message then stands as the problem).
absl::Status ReadXml(absl::string_view xml, XmlHandler* handler);

// XML 1.0's Char production.
bool IsXmlChar(uint32_t cp);

// Appends `s` escaped for text (attribute = false) or a double-quoted
// attribute value, replacing what XML cannot carry with U+FFFD.
void AppendXmlEscaped(absl::string_view s, bool attribute, std::string* out);

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_INTERNAL_XML_H_
