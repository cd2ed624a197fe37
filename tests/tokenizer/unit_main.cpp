#define BOOST_TEST_MODULE tokenizer_unit
#include <boost/test/unit_test.hpp>
