pub fn to_xml() {}
